package api

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"
)

// browserScripts: lines.sh prints its lines a moment apart, so that a
// browser sees them arrive one by one while the task runs.
var browserScripts = map[string]string{
	"lines.sh":  `for i in 1 2 3 4; do echo "line $i"; sleep 0.3; done`,
	"slow.sh":   `echo started; while :; do sleep 0.05; done`,
	"ticks.sh":  `i=0; while [ $i -lt 25 ]; do i=$((i+1)); echo "tick $i"; sleep 0.12; done`,
	"chatty.sh": `while :; do echo tick; sleep 0.1; done`,
}

const browserPolicy = `
rule "lines" {
  cmdline = "lines.sh"
  user    = "root"
}
rule "slow" {
  cmdline = "slow.sh"
  user    = "root"
}
rule "ticks" {
  cmdline = "ticks.sh"
  user    = "root"
}
rule "chatty" {
  cmdline = "chatty.sh"
  user    = "root"
}
`

// findChromium finds Debian's chromium: required in CI (make deps installs
// it), a skip elsewhere.
func findChromium(t *testing.T) string {
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv("CI") != "" {
		t.Fatal("chromium is required in CI (env CI is set) but was not found; install it with: apt-get install chromium (make deps does)")
	}
	t.Skip("chromium not found; install it (apt-get install chromium) to run the browser test; in CI this is a failure, not a skip")
	return ""
}

// pageProblems collects JavaScript exceptions, console errors and CSP
// violations: any of them fails the test.
type pageProblems struct {
	mu   sync.Mutex
	list []string
}

func (p *pageProblems) add(s string) {
	p.mu.Lock()
	p.list = append(p.list, s)
	p.mu.Unlock()
}

func (p *pageProblems) check(t *testing.T) {
	t.Helper()
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, s := range p.list {
		t.Errorf("the page reported: %s", s)
	}
}

// A real browser on the page: log in with a token, submit a task with the
// form and watch it go queued → running → succeeded while its lines
// stream in; see a task claimed meanwhile appear in the live list; open a
// running task, click kill, confirm, and see it killed. Then a read-only
// token sees no write buttons. Any script error or CSP violation fails.
// browser is a headless chromium on the env's page, with what the page
// reported (script errors, CSP violations) and its confirmation dialogs.
type browser struct {
	ctx      context.Context
	base     string
	problems pageProblems
	// confirm answers each confirmation dialog at once when set (as a
	// person accepting it); else the test answers with b.answer.
	confirm atomic.Bool
	opened  chan string  // the message of each dialog that opens
	closed  atomic.Int32 // dialogs closed, by any means
	cut     atomic.Bool  // the test has cut the page's connections
}

func openBrowser(t *testing.T, e *env) *browser {
	t.Helper()
	chromium := findChromium(t)
	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(chromium), chromedp.Headless,
		chromedp.WindowSize(1200, 900), chromedp.DisableGPU)
	if os.Geteuid() == 0 {
		opts = append(opts, chromedp.NoSandbox) // chromium refuses its own sandbox as root
	}
	actx, cancelA := chromedp.NewExecAllocator(context.Background(), opts...)
	t.Cleanup(cancelA)
	ctx, cancelB := chromedp.NewContext(actx, chromedp.WithLogf(t.Logf))
	t.Cleanup(cancelB)
	ctx, cancelT := context.WithTimeout(ctx, 90*time.Second)
	t.Cleanup(cancelT)
	if err := chromedp.Do(ctx); err != nil { // start the browser and the tab
		t.Fatalf("starting %s: %v", chromium, err)
	}
	b := &browser{ctx: ctx, base: e.http.URL, opened: make(chan string, 16)}
	b.confirm.Store(true)

	// Script errors, console errors and the browser's own error entries
	// (CSP violations, failed loads) fail the test. An EventSource that
	// the server ends after a task's done is not one.
	messages := chromedp.Console(ctx)
	go func() {
		for m, err := range messages {
			if err != nil {
				return
			}
			// The login page is answered 401 until a token is given.
			loginPage := strings.Contains(m.Text, "status of 401") && (m.URL == b.base+"/" || m.URL == b.base+"/login")
			// A stream the test itself cut off ends mid-chunk.
			cutOff := b.cut.Load() && strings.Contains(m.Text, "ERR_INCOMPLETE_CHUNKED_ENCODING")
			if (m.Type == chromedp.ConsoleError || m.IsException()) && !strings.Contains(m.Text, "EventSource") && !loginPage && !cutOff {
				b.problems.add(fmt.Sprintf("%s: %s (%s:%d)", m.Type, m.Text, m.URL, m.Line+1))
			}
		}
	}()
	dialogs := chromedp.Events(ctx, page.JavascriptDialogOpening)
	go func() {
		for d, err := range dialogs {
			if err != nil {
				return
			}
			b.opened <- d.Message
			if b.confirm.Load() {
				b.answer(true)
			}
		}
	}()
	closings := chromedp.Events(ctx, page.JavascriptDialogClosed)
	go func() {
		for _, err := range closings {
			if err != nil {
				return
			}
			b.closed.Add(1)
		}
	}()
	return b
}

// answer closes the open dialog: accept (OK) or dismiss (Cancel).
func (b *browser) answer(accept bool) {
	_, _ = chromedp.Call(b.ctx, page.HandleJavaScriptDialog, page.HandleJavaScriptDialogParams{Accept: accept})
}

// login opens the page with token.
func (b *browser) login(token string) error {
	return chromedp.Do(b.ctx,
		chromedp.Navigate(b.base+"/login"),
		chromedp.WaitVisible(chromedp.CSS(`input[name="token"]`)),
		chromedp.SendKeys(chromedp.CSS(`input[name="token"]`), token),
		chromedp.Submit(chromedp.CSS(`input[name="token"]`)),
		chromedp.WaitVisible(chromedp.ID("tasks")),
	)
}

// A real browser on the page: log in with a token, submit a task with the
// form and watch it go queued → running → succeeded while its lines
// stream in; see a task claimed meanwhile appear in the live list; open a
// running task, click kill, confirm, and see it killed. Then a read-only
// token sees no write buttons. Any script error or CSP violation fails.
func TestBrowser(t *testing.T) {
	e := newEnv(t, envOpt{tokens: true})
	id := fmt.Sprintf("browser-%d", os.Getpid())
	b := openBrowser(t, e)
	ctx, base := b.ctx, b.base

	stateIs := func(want string) chromedp.Action[chromedp.Void] {
		return chromedp.Poll[chromedp.Void](
			`(document.querySelector("#task-state") || {textContent: ""}).textContent.trim() === `+strconvQuote(want),
			chromedp.WithPollingInterval(20*time.Millisecond), chromedp.WithPollingTimeout(20*time.Second))
	}
	// Log in; submit lines.sh with the page's form while no executor runs:
	// the task page shows it queued.
	err := chromedp.Do(ctx,
		chromedp.Navigate(base+"/"),
		chromedp.WaitVisible(chromedp.CSS(`input[name="token"]`)),
		chromedp.SendKeys(chromedp.CSS(`input[name="token"]`), e.tokens["admin"]),
		chromedp.Submit(chromedp.CSS(`input[name="token"]`)),
		chromedp.WaitVisible(chromedp.ID("tasks")),
		chromedp.SetValue(chromedp.ID("submit-id"), "b1"),
		chromedp.SetValue(chromedp.ID("submit-cmdline"), "lines.sh"),
		chromedp.Submit(chromedp.ID("submit-cmdline")),
		chromedp.WaitVisible(chromedp.ID("task-state")),
		stateIs("queued"),
	)
	if err != nil {
		t.Fatalf("submit through the page: %v", err)
	}

	// Now an executor: the page, without a reload, shows it running while
	// its lines arrive one by one, then succeeded.
	e.startExecutor(id, browserPolicy, browserScripts)
	err = chromedp.Do(ctx, chromedp.WaitVisible(chromedp.CSS(`#log span.line`)), stateIs("running"))
	if err != nil {
		t.Fatalf("b1 running: %v", err)
	}
	lines, err := chromedp.Run(ctx, chromedp.TextContent(chromedp.ID("log")))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(lines, "line 1") || strings.Contains(lines, "line 4") {
		t.Errorf("while running, the log shows %q: want the first lines, not yet the last", lines)
	}
	if err := chromedp.Do(ctx, stateIs("succeeded")); err != nil {
		t.Fatalf("b1 succeeded: %v", err)
	}
	if lines, err = chromedp.Run(ctx, chromedp.TextContent(chromedp.ID("log"))); err != nil {
		t.Fatal(err)
	}
	if want := "line 1\nline 2\nline 3\nline 4\n[succeeded] exited with status 0"; strings.TrimSpace(lines) != want {
		t.Errorf("b1's log = %q, want %q", lines, want)
	}
	shot, err := chromedp.Run(ctx, chromedp.FullScreenshot(90))
	if err != nil {
		t.Fatal(err)
	}
	saveArtefact(t, "task-page.jpg", shot)

	// The list, live: a task submitted now appears in it, running, without
	// a reload; from there, its page and the kill button.
	if err := chromedp.Do(ctx, chromedp.Navigate(base+"/"), chromedp.WaitVisible(chromedp.ID("tasks"))); err != nil {
		t.Fatal(err)
	}
	submitJSON(t, e, e.tokens["admin"], `{"id":"b2","task":{"cmdline":"slow.sh"}}`)
	err = chromedp.Do(ctx,
		chromedp.WaitVisible(chromedp.CSS(`tr[data-id="b2"] .st-running`)),
		chromedp.Click(chromedp.CSS(`tr[data-id="b2"] a`)),
		chromedp.WaitVisible(chromedp.CSS(`#log span.line`)),
		stateIs("running"),
		chromedp.Click(chromedp.ID("kill-button")),
		chromedp.WaitVisible(chromedp.CSS(`#task-state .st-killed`)),
	)
	if err != nil {
		t.Fatalf("kill from the page: %v", err)
	}
	e.waitState("b2", e.tokens["reader"], "killed", 10*time.Second)

	// A read-only token: the same pages without a write button.
	if err := b.login(e.tokens["reader"]); err != nil {
		t.Fatal(err)
	}
	forms, err := chromedp.Run(ctx, chromedp.Evaluate[int](`document.querySelectorAll('form[method="post"]:not([action="/logout"])').length`))
	if err != nil || forms != 0 {
		t.Errorf("a read token's task list has %d write forms (%v)", forms, err)
	}
	if err := chromedp.Do(ctx, chromedp.Navigate(base+"/tasks/b1"), chromedp.WaitVisible(chromedp.ID("task-state"))); err != nil {
		t.Fatal(err)
	}
	forms, err = chromedp.Run(ctx, chromedp.Evaluate[int](`document.querySelectorAll('#kill-button, #retry-button').length`))
	if err != nil || forms != 0 {
		t.Errorf("a read token's task page has %d write buttons (%v)", forms, err)
	}
	b.problems.check(t)
}

// The page under the things that happen to it: "pause" holds lines back
// across a cut connection and a reload, and on "resume" the log is whole,
// nothing lost or repeated; a confirmation dialog left open while lines
// and events arrive stays open (nothing on the page refreshes it away),
// and Cancel kills nothing; the executors, queues and audit pages show
// what they are for, and the audit chain verifies from the page.
func TestBrowserPauseConfirmationAndPages(t *testing.T) {
	e := newEnv(t, envOpt{tokens: true})
	id := fmt.Sprintf("browser2-%d", os.Getpid())
	b := openBrowser(t, e)
	ctx := b.ctx
	if err := b.login(e.tokens["admin"]); err != nil {
		t.Fatal(err)
	}
	e.startExecutor(id, browserPolicy, browserScripts)
	count := func() int {
		n, err := chromedp.Run(ctx, chromedp.Evaluate[int](`document.querySelectorAll("#log span.line").length`))
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	pauseLabel := func() string {
		s, err := chromedp.Run(ctx, chromedp.TextContent(chromedp.ID("pause")))
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	held := func(what string, want int) {
		t.Helper()
		time.Sleep(500 * time.Millisecond) // ticks.sh prints about 4 lines meanwhile
		if n := count(); n != want {
			t.Errorf("paused, after %s: the log shows %d lines, want %d (held back)", what, n, want)
		}
		if l := pauseLabel(); l != "resume" {
			t.Errorf("after %s the button says %q: the pause was lost", what, l)
		}
	}

	submitJSON(t, e, e.tokens["admin"], `{"id":"p1","task":{"cmdline":"ticks.sh"}}`)
	if err := chromedp.Do(ctx, chromedp.Navigate(b.base+"/tasks/p1"), chromedp.WaitVisible(chromedp.CSS(`#log span.line`)),
		chromedp.Click(chromedp.ID("pause"))); err != nil {
		t.Fatalf("pause p1: %v", err)
	}
	shown := count()
	held("the pause", shown)
	// A cut connection: the EventSource reconnects with Last-Event-ID.
	b.cut.Store(true)
	e.http.CloseClientConnections()
	held("a cut connection", shown)
	// A reload starts the log anew, still paused: nothing is shown.
	if err := chromedp.Do(ctx, chromedp.Reload(), chromedp.WaitVisible(chromedp.ID("pause"))); err != nil {
		t.Fatal(err)
	}
	held("a reload", 0)
	if err := chromedp.Do(ctx, chromedp.Click(chromedp.ID("pause")), chromedp.WaitVisible(chromedp.CSS(`#task-state .st-succeeded`))); err != nil {
		t.Fatalf("resume p1 and wait for its end: %v", err)
	}
	time.Sleep(200 * time.Millisecond) // the done's line follows its state
	var want strings.Builder
	for i := 1; i <= 25; i++ {
		fmt.Fprintf(&want, "tick %d\n", i)
	}
	want.WriteString("[succeeded] exited with status 0")
	if got, err := chromedp.Run(ctx, chromedp.TextContent(chromedp.ID("log"))); err != nil || strings.TrimSpace(got) != want.String() {
		t.Errorf("p1's log after resume = %q (%v), want every tick once, in order, then the done", got, err)
	}

	// A kill's confirmation, left open while the task prints and other
	// tasks come and go; then Cancel.
	submitJSON(t, e, e.tokens["admin"], `{"id":"p2","task":{"cmdline":"chatty.sh"}}`)
	if err := chromedp.Do(ctx, chromedp.Navigate(b.base+"/tasks/p2"), chromedp.WaitVisible(chromedp.CSS(`#log span.line`))); err != nil {
		t.Fatal(err)
	}
	b.confirm.Store(false)
	closedBefore := b.closed.Load()
	clicked := make(chan error, 1)
	go func() { clicked <- chromedp.Do(ctx, chromedp.Click(chromedp.ID("kill-button"))) }()
	select {
	case msg := <-b.opened:
		t.Logf("confirmation: %q", msg)
	case <-time.After(10 * time.Second):
		t.Fatal("clicking kill opened no confirmation")
	}
	submitJSON(t, e, e.tokens["admin"], `{"id":"p3","task":{"cmdline":"ticks.sh"}}`)
	time.Sleep(1500 * time.Millisecond)
	if n := b.closed.Load(); n != closedBefore {
		t.Errorf("the confirmation closed by itself while lines and events arrived (%d closings)", n-closedBefore)
	}
	b.answer(false)
	if err := <-clicked; err != nil {
		t.Fatalf("the kill click: %v", err)
	}
	before := count()
	time.Sleep(500 * time.Millisecond)
	if after := count(); after <= before {
		t.Errorf("after Cancel the log stopped: %d lines, then %d", before, after)
	}
	e.waitState("p2", e.tokens["reader"], "running", time.Second) // Cancel killed nothing
	b.confirm.Store(true)
	if err := chromedp.Do(ctx, chromedp.Click(chromedp.ID("kill-button")), chromedp.WaitVisible(chromedp.CSS(`#task-state .st-killed`))); err != nil {
		t.Fatalf("kill p2, confirmed: %v", err)
	}

	// The other pages.
	pageHas := func(path, sel, want string) {
		t.Helper()
		if err := chromedp.Do(ctx, chromedp.Navigate(b.base+path), chromedp.WaitVisible(chromedp.CSS(sel))); err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		got, err := chromedp.Run(ctx, chromedp.TextContent(chromedp.CSS(sel)))
		if err != nil || !strings.Contains(got, want) {
			t.Errorf("%s: %s says %q (%v), want it to name %q", path, sel, got, err, want)
		}
	}
	pageHas("/executors", "main", id)
	pageHas("/queues", "main", names.Tasks)
	pageHas("/audit", "main", "p2")
	if err := chromedp.Do(ctx, chromedp.Click(chromedp.ID("verify")), chromedp.WaitVisible(chromedp.CSS(`#verify-result.ok`))); err != nil {
		t.Errorf("verify the audit chain from the page: %v", err)
	}
	b.problems.check(t)
}

func strconvQuote(s string) string { b, _ := json.Marshal(s); return string(b) }

// saveArtefact keeps a file of the run: in $TEST_ARTEFACTS when set (make
// unit sets it to ./artefacts, which CI collects), else in the test's
// temporary directory, gone when the test ends.
func saveArtefact(t *testing.T, name string, b []byte) {
	dir := os.Getenv("TEST_ARTEFACTS")
	if dir == "" {
		dir = t.TempDir()
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot: %s (%d bytes)", path, len(b))
}
