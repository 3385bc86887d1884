package config

import (
	"reflect"
	"slices"
	"testing"
)

// keyless are the Config fields with no config.json key of their own.
var keyless = map[string]string{
	"Kafka.SASLPassword": "Load reads it from kafka_sasl_password_file",
}

// coverage matches the field pointers of a table's rows against the leaf
// fields of the struct root points to (nested structs are walked). It
// returns the fields no row sets (less those in exempt), the fields more
// than one row sets, and the rows that set no field of root.
func coverage(root any, rows []any, exempt map[string]string) (missing, twice []string, stray []int) {
	type leaf struct {
		addr uintptr
		typ  reflect.Type
	}
	names := map[leaf]string{}
	var walk func(v reflect.Value, prefix string)
	walk = func(v reflect.Value, prefix string) {
		for i := range v.NumField() {
			f, sf := v.Field(i), v.Type().Field(i)
			name := prefix + sf.Name
			if sf.Anonymous {
				name = prefix // an embedded struct's fields are promoted
			}
			if f.Kind() == reflect.Struct {
				if !sf.Anonymous {
					name += "."
				}
				walk(f, name)
				continue
			}
			names[leaf{f.Addr().Pointer(), f.Type()}] = name
		}
	}
	walk(reflect.ValueOf(root).Elem(), "")
	count := map[string]int{}
	for i, p := range rows {
		v := reflect.ValueOf(p)
		name, ok := names[leaf{v.Pointer(), v.Type().Elem()}]
		if !ok {
			stray = append(stray, i)
			continue
		}
		count[name]++
	}
	for _, name := range names {
		switch {
		case count[name] == 0 && exempt[name] == "":
			missing = append(missing, name)
		case count[name] > 1:
			twice = append(twice, name)
		}
	}
	slices.Sort(missing)
	slices.Sort(twice)
	return missing, twice, stray
}

// TestEveryFieldHasOneKey: a field added to Config without a row in keys,
// or set by two rows, fails here.
func TestEveryFieldHasOneKey(t *testing.T) {
	c := &Config{}
	var rows []any
	seen := map[string]bool{}
	for _, k := range keys {
		if seen[k.name] {
			t.Errorf("key %q is listed twice", k.name)
		}
		seen[k.name] = true
		rows = append(rows, k.field(c))
	}
	missing, twice, stray := coverage(c, rows, keyless)
	for _, name := range missing {
		t.Errorf("Config.%s has no row in keys; add one (or, if it has no config.json key, to keyless)", name)
	}
	for _, name := range twice {
		t.Errorf("Config.%s is set by more than one row in keys", name)
	}
	for _, i := range stray {
		t.Errorf("key %q: its field is not a field of the Config it was given", keys[i].name)
	}
	if len(fields) != len(keys) {
		t.Errorf("fields has %d setters for %d keys", len(fields), len(keys))
	}
}

// TestCoverageCatchesAMissingRow checks the check itself, on a struct
// shaped like Config: an embedded struct, a nested one, and one field left
// without a row.
func TestCoverageCatchesAMissingRow(t *testing.T) {
	type inner struct{ A, B string }
	type nested struct{ N int }
	type cfg struct {
		inner
		X   int
		Sub nested
		New bool // added without a row
	}
	c := &cfg{}
	missing, twice, stray := coverage(c, []any{&c.A, &c.B, &c.X, &c.Sub.N, &c.X, new(int)}, nil)
	if !slices.Equal(missing, []string{"New"}) || !slices.Equal(twice, []string{"X"}) || !slices.Equal(stray, []int{5}) {
		t.Errorf("missing %v, twice %v, stray %v; want [New], [X], [5]", missing, twice, stray)
	}
}

// TestKeysHaveWorkingDefaults: every row's setter, default and String
// format can be built for its field's type (a wrong def type would panic
// only when first used).
func TestKeysHaveWorkingDefaults(t *testing.T) {
	c := Default()
	_ = c.String()
	for _, k := range keys {
		if k.def != nil && k.fill != nil {
			t.Errorf("key %q has both def and fill; keep one", k.name)
		}
	}
}
