package main_test

import (
	"bufio"
	"context"
	"encoding/base64"
	"fmt"
	stdhtml "html"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/contactcenter/presence-provider/client"
	"github.com/contactcenter/presence-provider/internal/freeport"
	"github.com/contactcenter/presence-provider/schemas"
)

// chromium finds the browser, or ends the test: skipped normally, failed
// under CI=true, where .ci/run installs it.
func chromium(t testing.TB) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser"} {
		if path, err := exec.LookPath(name); err == nil {
			return path
		}
	}
	msg := "chromium not found in PATH; install it with: apt-get install chromium"
	if os.Getenv("CI") == "true" {
		t.Fatal(msg + " (CI=true: the status page test must run, not skip)")
	}
	t.Skip(msg)
	return ""
}

// screenshotDir is where the test keeps its screenshot:
// PRESENCE_SCREENSHOT_DIR (an absolute path; the README's picture is made
// with PRESENCE_SCREENSHOT_DIR=$PWD/docs/img), else the test's own folder.
func screenshotDir(t *testing.T) string {
	if dir := os.Getenv("PRESENCE_SCREENSHOT_DIR"); dir != "" {
		return dir
	}
	return t.TempDir()
}

// js is a script the page runs; it returns JSON-able values.
func js(script string, args ...any) string { return fmt.Sprintf(script, args...) }

// TestStatusPageInChromium loads the status page of a real presenced in a
// headless Chromium, and, without a reload: an attendant input changes the
// agent's row, a new subscription adds one, the filter box hides the rows
// that do not match, a URI and an activity carrying HTML show as text and
// run nothing, and a click on an agent opens its explanation.
func TestStatusPageInChromium(t *testing.T) {
	browser := chromium(t)
	presenced, presencectl := build(t)
	url, base := startPageDaemon(t, presenced)
	ucc := natsClient(t, url)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	const (
		agent = "sip:agent1@attendant.example"
		later = "sip:agent7@attendant.example"
		// <>" are refused in URIs, ";" starts parameters; entities without
		// one are still markup: as HTML this reads <script>alert('x')&.
		hostile = "sip:&ltscript&gtalert('x')&amp@attendant.example"
		html    = `<img src=x onerror="document.title='xss'"><b>bold</b>`
	)
	agents := []string{agent, "sip:agent2@attendant.example", "sip:agent3@attendant.example",
		"sip:agent4@attendant.example", "sip:agent5@attendant.example", hostile, "tel:+31612345678", "sip:nobody@example.com"}
	subscribe := func(ucc *client.Client, name string, uris ...string) {
		t.Helper()
		var refs []schemas.AgentRef
		for _, u := range uris {
			refs = append(refs, schemas.AgentRef{URI: u})
		}
		if _, err := ucc.Subscribe(ctx, schemas.SubscribeRequest{UCC: name, Agents: refs}); err != nil {
			t.Fatal(err)
		}
	}
	input := func(uri, availability, activity string) {
		t.Helper()
		if rep, err := ucc.Attendant(ctx, schemas.Key(uri), schemas.AttendantInput{Availability: availability, Activity: activity}); err != nil || !rep.OK {
			t.Fatalf("attendant input for %s: %+v, %v", uri, rep, err)
		}
	}
	subscribe(ucc, "ucc_app01", agents...)
	subscribe(ucc, "ucc_app02", agents[:3]...)
	input("sip:agent2@attendant.example", "Available", "")
	input("sip:agent3@attendant.example", "Away", "Lunch")
	input("sip:agent4@attendant.example", "DoNotDisturb", "Presenting")
	input(hostile, "Busy", html)

	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(browser), chromedp.NoSandbox,
		chromedp.WindowSize(1400, 900))
	alloc, cancelAlloc := chromedp.NewExecAllocator(ctx, opts...)
	defer cancelAlloc()
	tab, cancelTab := chromedp.NewContext(alloc, chromedp.WithLogf(t.Logf))
	defer cancelTab()

	key := schemas.Key(agent)
	row := fmt.Sprintf(`tr[data-key="%s"]`, key)
	cell := func(key string, n int) string {
		return fmt.Sprintf(`document.querySelector('tr[data-key="%s"] td:nth-child(%d)')?.textContent`, key, n)
	}
	until := func(what, script string) chromedp.Action[chromedp.Void] {
		return func(ctx context.Context, tg *chromedp.Target) (chromedp.Void, error) {
			if _, err := chromedp.Poll[chromedp.Void](script, chromedp.WithPollingTimeout(30*time.Second))(ctx, tg); err != nil {
				// What the page shows then, for the failure's message.
				shows, _ := chromedp.Evaluate[string](`'filter ' + JSON.stringify(document.getElementById('filter').value) +
					', rows: ' + Array.from(document.querySelectorAll('#agents tbody tr')).map(tr => tr.innerText).join(' | ')`)(ctx, tg)
				return chromedp.Void{}, fmt.Errorf("waiting for %s: %w; the page shows %s", what, err, shows)
			}
			return chromedp.Void{}, nil
		}
	}
	do := func(steps ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		if err := chromedp.Do(tab, steps...); err != nil {
			t.Fatal(err)
		}
	}
	eval := func(script string) any {
		t.Helper()
		v, err := chromedp.Run(tab, chromedp.Evaluate[any](script))
		if err != nil {
			t.Fatal(err)
		}
		return v
	}

	do(chromedp.Navigate(base),
		chromedp.WaitVisible(row),
		until("the sources and this worker shown", `document.querySelector('#sources tbody')?.textContent.includes('attendant') &&
			document.querySelector('#workers tbody')?.textContent.includes('live')`),
	)
	eval(`window.notReloaded = true`) // a reload would lose it
	if before := eval(cell(key, 2)); before != "none" {
		t.Fatalf("presence of %s before any input: %v; want none", agent, before)
	}

	input(agent, "Busy", "InACall")
	do(until("the row Busy, InACall", js(`%s === 'Busy (6500)' && %s === 'InACall'`, cell(key, 2), cell(key, 3))))
	subscribe(ucc, "ucc_app03", later)
	do(until("the agent subscribed after the load listed", js(`%s === %q`, cell(schemas.Key(later), 1), later)))
	if kept := eval(`window.notReloaded === true`); kept != true {
		t.Fatal("the page reloaded: it must change in place")
	}

	// Text, never markup: the URI and the activity read exactly as given,
	// and the table holds no element of theirs.
	hostileKey := schemas.Key(hostile)
	do(until("the hostile agent's row", js(`%s === %q && %s === %q`, cell(hostileKey, 1), hostile, cell(hostileKey, 3), html)))
	injected := eval(`document.querySelectorAll('#agents img, #agents b, #agents script').length`)
	if title := eval(`document.title`); injected != float64(0) || title == "xss" {
		t.Fatalf("the agents' data became markup: %v elements, title %v", injected, title)
	}

	// Emptied as a person would, with the input event a person's
	// keystrokes fire.
	clearFilter := chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
		_, err := chromedp.Evaluate[bool](`(f => { f.value = ''; return f.dispatchEvent(new Event('input')) })(document.getElementById('filter'))`)(ctx, tg)
		return err
	})
	shown := `Array.from(document.querySelectorAll('#agents tbody tr')).map(tr => tr.dataset.key).join(',')`
	agent2 := schemas.Key("sip:agent2@attendant.example")
	do(chromedp.SendKeys("#filter", "agent2"),
		until("only agent2's row shown", js(`%s === %q`, shown, agent2)),
		chromedp.SendKeys("#filter", " available"),
		until("agent2 still shown: every word matches", js(`%s === %q`, shown, agent2)),
		clearFilter,
		chromedp.SendKeys("#filter", "busy"),
		until("the Busy agents shown", js(`%s.split(',').sort().join(',') === %q`, shown,
			strings.Join(sortedKeys(agent, hostile), ","))),
		clearFilter,
		until("every agent shown again", js(`%s.split(',').length === %d`, shown, len(agents)+1)),
	)

	dir := screenshotDir(t)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	shot := func(name string) {
		t.Helper()
		png, err := chromedp.Run(tab, chromedp.FullScreenshot(100))
		if err != nil {
			t.Fatal(err)
		}
		file := filepath.Join(dir, name)
		if err := os.WriteFile(file, png, 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("screenshot: %s", file)
	}
	do(until("the summary counts every agent", js(`document.getElementById('totals').textContent.startsWith('%d agents')`, len(agents)+1)))
	shot("status-page.png")

	do(chromedp.Click(row+" button.agent"),
		chromedp.WaitVisible("#explain"),
		until("the agent's explanation", js(`document.getElementById('explain-uri').textContent === %q &&
			document.getElementById('explain-body').textContent.includes('"uri": %q')`, agent, agent)),
	)
	shot("status-page-explain.png")

	// presencectl explain, as an operator reads it in a terminal: the
	// README's second picture.
	out, err := exec.Command(presencectl, "-nats", url, "explain", agent).CombinedOutput()
	if err != nil {
		t.Fatalf("presencectl explain: %v\n%s", err, out)
	}
	for _, want := range []string{agent, "attendant: pattern", "ucc_app01", "ucc_app02", "Busy"} {
		if !strings.Contains(string(out), want) {
			t.Fatalf("presencectl explain tells no %q:\n%s", want, out)
		}
	}
	terminal := `<body style="margin:0;background:#1d1f21"><pre style="margin:0;padding:16px;color:#e0e0e0;font:14px monospace">` +
		"$ presencectl explain " + agent + "\n" + stdhtml.EscapeString(string(out)) + "</pre></body>"
	do(chromedp.Navigate("data:text/html;base64," + base64.StdEncoding.EncodeToString([]byte(terminal))))
	shot("presencectl-explain.png")
}

// startPageDaemon runs presenced with the attendant source on an embedded
// NATS; it returns the NATS URL and the status page's address.
func startPageDaemon(tb testing.TB, presenced string) (url, page string) {
	tb.Helper()
	url = fmt.Sprintf("nats://127.0.0.1:%d", freeport.T(tb))
	d := startDaemon(tb, presenced, []string{
		"PRESENCE_CONFIG=" + attendantConfig(tb),
		"PRESENCE_EMBEDDED_LISTEN=" + strings.TrimPrefix(url, "nats://"),
		"PRESENCE_DATA_DIR=" + tb.TempDir(),
	})
	return url, "http://" + d.httpAddr(tb) + "/"
}

func sortedKeys(uris ...string) []string {
	var keys []string
	for _, u := range uris {
		keys = append(keys, schemas.Key(u))
	}
	slices.Sort(keys)
	return keys
}

// BenchmarkStatusPage measures the page of a real presenced with 10,000
// agents, each with a presence: the first load as the stream sends it
// (bytes), the time from navigating a headless Chromium to the table
// drawn, and the stream while inputs change random agents as fast as one
// UCC sends them (bytes and messages a second, against inputs a second).
//
//	go test -run '^$' -bench BenchmarkStatusPage -benchtime 5x ./cmd/presenced
func BenchmarkStatusPage(b *testing.B) {
	const n = 10_000
	browser := chromium(b)
	presenced, _ := build(b)
	url, base := startPageDaemon(b, presenced)
	ucc := natsClient(b, url)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	var refs []schemas.AgentRef
	for i := range n {
		refs = append(refs, schemas.AgentRef{URI: fmt.Sprintf("sip:agent%05d@attendant.example", i)})
	}
	if _, err := ucc.Subscribe(ctx, schemas.SubscribeRequest{UCC: "ucc_app01", Agents: refs}); err != nil {
		b.Fatal(err)
	}
	availabilities := []string{"Available", "Busy", "Away", "DoNotDisturb"}
	input := func(i, round int) error {
		_, err := ucc.Attendant(ctx, schemas.Key(refs[i].URI),
			schemas.AttendantInput{Availability: availabilities[(i+round)%4], Activity: fmt.Sprintf("round %d", round)})
		return err
	}
	var wg sync.WaitGroup
	for w := range 16 {
		wg.Go(func() {
			for i := w; i < n; i += 16 {
				if err := input(i, 0); err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()

	// The first load, as the stream sends it.
	loading := time.Now()
	resp, err := http.Get(base + "api/events")
	if err != nil {
		b.Fatal(err)
	}
	counted := &countingReader{r: resp.Body}
	events := bufio.NewScanner(counted)
	events.Buffer(nil, 64<<20)
	rows := 0
	for rows < n && events.Scan() {
		rows += strings.Count(events.Text(), `"key":`)
	}
	firstLoad, firstLoadMS := float64(counted.n.Load())/1024, float64(time.Since(loading).Milliseconds())

	// The stream while the agents change: bytes and messages a second.
	go func() {
		for events.Scan() {
			if strings.HasPrefix(events.Text(), "event: rows") {
				counted.messages.Add(1)
			}
		}
	}()
	before, start := counted.n.Load(), time.Now()
	var inputs atomic.Int64
	churn, stopChurn := context.WithTimeout(ctx, 3*time.Second)
	for w := range 16 {
		wg.Go(func() {
			for round := 1; churn.Err() == nil; round++ {
				if input((w*7919+round*104729)%n, round) == nil {
					inputs.Add(1)
				}
			}
		})
	}
	wg.Wait()
	stopChurn()
	secs := time.Since(start).Seconds()
	resp.Body.Close()
	metrics := map[string]float64{"first-load-KiB": firstLoad, "first-load-ms": firstLoadMS, "inputs/s": float64(inputs.Load()) / secs,
		"stream-KiB/s": float64(counted.n.Load()-before) / 1024 / secs, "stream-msgs/s": float64(counted.messages.Load()) / secs}

	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(browser), chromedp.NoSandbox,
		chromedp.WindowSize(1400, 900))
	alloc, cancelAlloc := chromedp.NewExecAllocator(ctx, opts...)
	defer cancelAlloc()
	tab, cancelTab := chromedp.NewContext(alloc)
	defer cancelTab()
	drawn := chromedp.Poll[chromedp.Void](fmt.Sprintf(`document.getElementById('shown').textContent.includes('%d agents')`, n),
		chromedp.WithPollingTimeout(time.Minute))
	for b.Loop() {
		if err := chromedp.Do(tab, chromedp.Navigate(base), chromedp.WaitReady("#shown"), chromedp.Func(func(ctx context.Context, t *chromedp.Target) error {
			_, err := drawn(ctx, t)
			return err
		})); err != nil {
			b.Fatal(err)
		}
	}
	for unit, v := range metrics {
		b.ReportMetric(v, unit)
	}
}

// countingReader counts the bytes read through it.
type countingReader struct {
	r        io.Reader
	n        atomic.Int64
	messages atomic.Int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n.Add(int64(n))
	return n, err
}
