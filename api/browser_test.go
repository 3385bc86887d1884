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
	"testing"
	"time"

	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"
)

// browserScripts: lines.sh prints its lines a moment apart, so that a
// browser sees them arrive one by one while the task runs.
var browserScripts = map[string]string{
	"lines.sh": `for i in 1 2 3 4; do echo "line $i"; sleep 0.3; done`,
	"slow.sh":  `echo started; while :; do sleep 0.05; done`,
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
func TestBrowser(t *testing.T) {
	chromium := findChromium(t)
	e := newEnv(t, envOpt{tokens: true})
	id := fmt.Sprintf("browser-%d", os.Getpid())

	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(chromium), chromedp.Headless,
		chromedp.WindowSize(1200, 900), chromedp.DisableGPU)
	if os.Geteuid() == 0 {
		opts = append(opts, chromedp.NoSandbox) // chromium refuses its own sandbox as root
	}
	actx, cancelA := chromedp.NewExecAllocator(context.Background(), opts...)
	defer cancelA()
	ctx, cancelB := chromedp.NewContext(actx, chromedp.WithLogf(t.Logf))
	defer cancelB()
	ctx, cancelT := context.WithTimeout(ctx, 60*time.Second)
	defer cancelT()
	if err := chromedp.Do(ctx); err != nil { // start the browser and the tab
		t.Fatalf("starting %s: %v", chromium, err)
	}

	// Script errors, console errors and the browser's own error entries
	// (CSP violations, failed loads) fail the test. An EventSource that
	// the server ends after a task's done is not one.
	base := e.http.URL
	var problems pageProblems
	messages := chromedp.Console(ctx)
	go func() {
		for m, err := range messages {
			if err != nil {
				return
			}
			// The login page is answered 401 until a token is given.
			loginPage := strings.Contains(m.Text, "status of 401") && (m.URL == base+"/" || m.URL == base+"/login")
			if (m.Type == chromedp.ConsoleError || m.IsException()) && !strings.Contains(m.Text, "EventSource") && !loginPage {
				problems.add(fmt.Sprintf("%s: %s (%s:%d)", m.Type, m.Text, m.URL, m.Line+1))
			}
		}
	}()
	// The kill confirmation: accept it, as a person would.
	dialogs := chromedp.Events(ctx, page.JavascriptDialogOpening)
	go func() {
		for _, err := range dialogs {
			if err != nil {
				return
			}
			_, _ = chromedp.Call(ctx, page.HandleJavaScriptDialog, page.HandleJavaScriptDialogParams{Accept: true})
		}
	}()

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
	err = chromedp.Do(ctx,
		chromedp.Navigate(base+"/login"),
		chromedp.WaitVisible(chromedp.CSS(`input[name="token"]`)),
		chromedp.SendKeys(chromedp.CSS(`input[name="token"]`), e.tokens["reader"]),
		chromedp.Submit(chromedp.CSS(`input[name="token"]`)),
		chromedp.WaitVisible(chromedp.ID("tasks")),
	)
	if err != nil {
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
	problems.check(t)
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
