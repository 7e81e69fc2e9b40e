package caddymcpo

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"go/ast"
	goparser "go/parser"
	"go/token"
	"os"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
)

// referenceOf returns the subdirectives a Caddyfile syntax block lists, as
// "<block> <name> <syntax>", where block is the directive whose block holds
// the line (mcpo, server, oauth or cors). Comments, placeholder lines such
// as "<the subdirectives above>" and closing braces are not subdirectives.
func referenceOf(t *testing.T, text string) []string {
	t.Helper()
	var blocks, out []string
	for _, line := range strings.Split(text, "\n") {
		line, _, _ = strings.Cut(line, "#")
		line = strings.TrimSpace(line)
		switch {
		case line == "" || strings.HasPrefix(line, "<"):
			continue
		case line == "}":
			if len(blocks) == 0 {
				t.Fatalf("unbalanced braces in\n%s", text)
			}
			blocks = blocks[:len(blocks)-1]
			continue
		}
		opens := strings.HasSuffix(line, "{")
		line = strings.TrimSpace(strings.TrimSuffix(line, "{"))
		name, _, _ := strings.Cut(line, " ")
		if len(blocks) > 0 {
			out = append(out, blocks[len(blocks)-1]+" "+line)
		}
		if opens {
			blocks = append(blocks, name)
		}
	}
	if len(blocks) != 0 {
		t.Fatalf("unclosed blocks %q in\n%s", blocks, text)
	}
	return out
}

// tableReference is what a reference must list: every directive of the
// table, a server's setting at the top of the mcpo block.
func tableReference() []string {
	var out []string
	for _, d := range directives {
		first := d.in & -d.in // a setting is listed where a single server's is written
		out = append(out, strings.TrimSpace(first.name()+" "+d.name+" "+d.syntax))
	}
	return out
}

// assertSameReference reports the directives missing from the reference
// got and those it lists that the table has not.
func assertSameReference(t *testing.T, where string, got []string) {
	t.Helper()
	want := tableReference()
	for _, w := range want {
		if !slices.Contains(got, w) {
			t.Errorf("%s lacks %q", where, w)
		}
	}
	for _, g := range got {
		if !slices.Contains(want, g) {
			t.Errorf("%s lists %q, which is not in the directives table", where, g)
		}
	}
	if len(got) != len(want) {
		t.Errorf("%s lists %d subdirectives, the table has %d", where, len(got), len(want))
	}
}

func TestDirectives_READMEReferenceListsEveryDirectiveWithItsSyntax(t *testing.T) {
	readme, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, section, ok := strings.Cut(string(readme), "\n## Caddyfile reference\n")
	if !ok {
		t.Fatal(`README.md has no "## Caddyfile reference" section`)
	}
	_, block, ok := strings.Cut(section, "```caddyfile\n")
	block, _, ok2 := strings.Cut(block, "```")
	if !ok || !ok2 {
		t.Fatal("the Caddyfile reference has no caddyfile code block")
	}
	assertSameReference(t, "README.md's Caddyfile reference", referenceOf(t, block))
}

func TestDirectives_UnmarshalCaddyfileDocListsEveryDirectiveWithItsSyntax(t *testing.T) {
	f, err := goparser.ParseFile(token.NewFileSet(), "caddyfile.go", nil, goparser.ParseComments)
	if err != nil {
		t.Fatal(err)
	}
	var doc string
	for _, d := range f.Decls {
		if fd, ok := d.(*ast.FuncDecl); ok && fd.Name.Name == "UnmarshalCaddyfile" {
			doc = fd.Doc.Text()
		}
	}
	var block []string
	for _, line := range strings.Split(doc, "\n") {
		if strings.HasPrefix(line, "\t") { // the syntax block
			block = append(block, line)
		}
	}
	if len(block) == 0 {
		t.Fatal("UnmarshalCaddyfile's documentation shows no syntax")
	}
	assertSameReference(t, "UnmarshalCaddyfile's documentation", referenceOf(t, strings.Join(block, "\n")))
}

func TestDirectives_TableIsConsistent(t *testing.T) {
	type key struct {
		b    block
		name string
	}
	seen := map[key]bool{}
	for _, d := range directives {
		for _, b := range []block{mcpoBlock, serverBlock, oauthBlock, corsBlock, identityBlock, accessBlock, limitsBlock} {
			if d.in&b == 0 {
				continue
			}
			if seen[key{b, d.name}] {
				t.Errorf("%s appears twice in %s blocks", d.name, b.name())
			}
			seen[key{b, d.name}] = true
		}
		if d.parse == nil || d.field == "" || d.in == 0 {
			t.Errorf("%s: parse, field and blocks are all needed", d.name)
		}
		if first, _, _ := strings.Cut(d.example, " "); strings.TrimSpace(first) != d.name {
			t.Errorf("%s: the example %q does not use it", d.name, d.example)
		}
		if d.opens != 0 && len(directivesIn(d.opens)) == 0 {
			t.Errorf("%s opens a block without subdirectives", d.name)
		}
	}
}

// exampleBlock returns an mcpo block at /tools using the example of d,
// and the same block without it: the least each directive needs around
// it to make a valid configuration.
func exampleBlock(d directive) (with, without string) {
	var base []string
	switch {
	case d.in&serverBlock != 0 && d.in&mcpoBlock == 0: // in a server block only
		base = []string{"server time {", "\tcommand prog", "\t" + d.example, "}"}
		return siteWith(base), siteWith([]string{"server time {", "\tcommand prog", "}"})
	case d.in == oauthBlock:
		oauthBase := []string{"grant client_credentials", "client_id {env.MCPO_CLIENT_ID}", "private_key {env.MCPO_PRIVATE_KEY}"}
		var inner []string
		for _, l := range oauthBase {
			if first, _, _ := strings.Cut(l, " "); first != d.name {
				inner = append(inner, "\t"+l)
			}
		}
		wrap := func(extra ...string) string {
			return siteWith(append(append([]string{"url https://mcp.example.com/mcp", "oauth {"}, append(inner, extra...)...), "}"))
		}
		return wrap("\t" + d.example), wrap()
	case d.in == corsBlock:
		return siteWith([]string{"command prog", "cors * {", "\t" + d.example, "}"}), siteWith([]string{"command prog", "cors *"})
	case d.in == limitsBlock:
		return siteWith([]string{"command prog", "limits {", "\t" + d.example, "}"}), siteWith([]string{"command prog"})
	case d.in == identityBlock:
		source := "identity openwebui_jwt {env.MCPO_JWT_SECRET}"
		if d.name == "role" || d.name == "groups" { // of a placeholder source
			source = "identity {http.request.header.X-User}"
		}
		return siteWith([]string{"command prog", source + " {", "\t" + d.example, "}"}), siteWith([]string{"command prog", source})
	case d.in == accessBlock:
		return siteWith([]string{"command prog", "access {", "\t" + d.example, "}"}), siteWith([]string{"command prog"})
	}
	switch d.name {
	case "command", "url", "server", "config":
	case "header", "oauth", "transport", "forward_headers":
		base = []string{"url https://mcp.example.com/mcp"}
	case "queue_timeout":
		base = []string{"command prog", "max_concurrent 2"}
	case "protect_docs":
		base = []string{"command prog", "api_key {env.MCPO_KEY}"}
	case "isolation", "idle_timeout", "max_sessions", "list_as":
		base = []string{"command prog", "identity {http.request.header.X-Test-User}"}
		if d.name != "isolation" {
			base = append(base, "isolation user")
		}
	default:
		base = []string{"command prog"}
	}
	return siteWith(append(slices.Clone(base), strings.Split(d.example, "\n")...)), siteWith(base)
}

// siteWith wraps lines in a site with an mcpo block at /tools.
func siteWith(lines []string) string {
	return ":8080 {\n\tmcpo /tools {\n\t\t" + strings.Join(lines, "\n\t\t") + "\n\t}\n}\n"
}

// fieldOf returns the JSON value of the field d sets, in the handler JSON
// raw, nil when it is absent.
func fieldOf(t *testing.T, raw json.RawMessage, d directive) any {
	t.Helper()
	var h map[string]any
	if err := json.Unmarshal(raw, &h); err != nil {
		t.Fatal(err)
	}
	obj := h
	server := func() map[string]any {
		servers, _ := h["servers"].([]any)
		if len(servers) == 0 {
			t.Fatalf("no servers in %s", raw)
		}
		return servers[0].(map[string]any)
	}
	switch {
	case d.in&serverBlock != 0:
		obj = server()
	case d.in == oauthBlock:
		obj, _ = server()["oauth"].(map[string]any)
	case d.in == corsBlock:
		obj, _ = h["cors"].(map[string]any)
	case d.in == identityBlock:
		obj, _ = h["identity"].(map[string]any)
	case d.in == accessBlock:
		obj, _ = h["access"].(map[string]any)
	case d.in == limitsBlock:
		obj, _ = server()["limits"].(map[string]any)
	}
	return obj[d.field]
}

// Every subdirective of the table, through the Caddyfile adapter to the
// JSON field it sets, then loaded and provisioned as Caddy does.
func TestDirectives_EveryExampleGoesThroughTheAdapterToItsFieldAndProvisions(t *testing.T) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range map[string]string{
		"MCPO_KEY": "k", "MCPO_ADMIN_KEY": "a", "MCPO_CLIENT_ID": "caddy", "MCPO_CLIENT_SECRET": "s3cret",
		"MCPO_JWT_SECRET":  "a-secret-of-32-bytes-or-more-0123456789",
		"MCPO_PRIVATE_KEY": string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})),
	} {
		t.Setenv(k, v)
	}
	storage, err := json.Marshal(map[string]string{"module": "file_system", "root": t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	ctx, err := caddy.ProvisionContext(&caddy.Config{StorageRaw: storage})
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range directives {
		t.Run(d.in.name()+"/"+d.name, func(t *testing.T) {
			with, without := exampleBlock(d)
			if strings.Contains(with, "identity {") && lookup("identity", mcpoBlock) == nil {
				t.Skip("needs the handler's identity directive, which this build does not have yet")
			}
			_, found := adaptCaddyfileForTest(t, with)
			mcpo := mcpoHandlersOf(found)
			if len(mcpo) != 1 {
				t.Fatalf("%d mcpo handlers in\n%s", len(mcpo), with)
			}
			got, before := fieldOf(t, mcpo[0].Raw, d), any(nil)
			// Without the example, the block may be invalid: the field is unset.
			if _, _, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(without), nil); err == nil {
				_, found := adaptCaddyfileForTest(t, without)
				before = fieldOf(t, mcpoHandlersOf(found)[0].Raw, d)
			}
			if got == nil || reflect.DeepEqual(got, before) {
				t.Fatalf("%q sets %s to %v (%v without it), in\n%s", d.example, d.field, got, before, mcpo[0].Raw)
			}

			var obj map[string]json.RawMessage
			if err := json.Unmarshal(mcpo[0].Raw, &obj); err != nil {
				t.Fatal(err)
			}
			delete(obj, "handler")
			raw, err := json.Marshal(obj)
			if err != nil {
				t.Fatal(err)
			}
			mod, err := ctx.LoadModuleByID("http.handlers.mcpo", raw)
			if err != nil {
				t.Fatalf("provisioning %s: %v", raw, err)
			}
			if err := mod.(*Handler).Cleanup(); err != nil {
				t.Fatal(err)
			}
		})
	}
}
