package kafkaqueue

import (
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/taskjob/task-job/task"
)

// FuzzFold feeds arbitrary records to the fold of the status and
// executors topics: anyone who may produce to them can write anything, and
// the fold must neither crash nor let a record that is not a claim give an
// id an owner.
func FuzzFold(f *testing.F) {
	f.Add([]byte(`{"k":"claim","id":"a","executor":"x","token":"t","t":1}`), []byte(`{"k":"beat","executor":"x","holder":"h","t":1}`))
	f.Add([]byte(`{"k":"finish","id":"a","executor":"x","token":"t","claimed":true,"state":"succeeded","done":"{}"}`), []byte(`{"k":"expired","executor":"x"}`))
	f.Add([]byte(`{"k":"lost","id":"a","dead":"x","token":"t"}`), []byte(`{"k":"left","executor":""}`))
	f.Add([]byte(`{"k":"cancel","id":"a","t":-9223372036854775808}`), []byte(`null`))
	f.Fuzz(func(t *testing.T, status, beat []byte) {
		v := &view{topics: Topics{Status: "s", Executors: "e"}, retention: time.Hour,
			ids: map[string]*idState{}, execs: map[string]*execState{}, next: map[string]map[int32]int64{}}
		v.applyStatus(&kgo.Record{Topic: "s", Value: status})
		v.applyStatus(&kgo.Record{Topic: "s", Value: status, Offset: 1})
		v.applyBeat(&kgo.Record{Topic: "e", Value: beat})
		v.applyBeat(&kgo.Record{Topic: "e", Value: beat})
		for id, st := range v.ids {
			if st.state == task.Running && st.token == "" && st.exec == "" && id == "" {
				t.Fatalf("an empty id runs: %+v", st)
			}
		}
		v.prune()
	})
}
