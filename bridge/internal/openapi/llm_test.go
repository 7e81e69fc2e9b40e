package openapi

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/santhosh-tekuri/jsonschema/v6"
)

// rejection is one way an LLM provider refuses a function.
type rejection struct {
	rule     string // "<provider>: <what>"
	function string // the operationId
	where    string // the argument, or a JSON pointer into the parameters
	detail   string
}

func (r rejection) String() string {
	return fmt.Sprintf("%s: %s at %q: %s", r.rule, r.function, r.where, r.detail)
}

// The rules below are the ones each provider applies to every function,
// strict mode or not, as their documentation and their error messages
// state them.
var (
	// OpenAI, Chat Completions and Responses API reference,
	// tools[].function.name: "Must be a-z, A-Z, 0-9, or contain underscores
	// and dashes, with a maximum length of 64." The API answers
	// "... does not match '^[a-zA-Z0-9_-]{1,64}$'".
	openAIName = regexp.MustCompile(`^[a-zA-Z0-9_-]{1,64}$`)
	// Anthropic, tool use documentation, tools[].name: "Must match the
	// regex ^[a-zA-Z0-9_-]{1,64}$".
	anthropicName = regexp.MustCompile(`^[a-zA-Z0-9_-]{1,64}$`)
	// Anthropic refuses a request whose tool has another argument name:
	// "tools.N.custom.input_schema.properties: Property keys should match
	// pattern '^[a-zA-Z0-9_.-]{1,64}$'" (reported in
	// anthropics/claude-code#79418 and n8n-io/n8n#30590; only the
	// top-level properties are checked).
	anthropicPropertyKey = regexp.MustCompile(`^[a-zA-Z0-9_.-]{1,64}$`)
)

// openAIRejections applies OpenAI's function rules that hold with and
// without strict mode.
func openAIRejections(f function) []rejection {
	var out []rejection
	add := func(rule, where, detail string) {
		out = append(out, rejection{rule: "openai: " + rule, function: f.Name, where: where, detail: detail})
	}
	if !openAIName.MatchString(f.Name) {
		add("function name", "", "not "+openAIName.String())
	}
	// "Invalid schema for function 'f': schema must have type 'object' and
	// not have 'oneOf'/'anyOf'/'allOf'/'enum'/'const'/'not' at the top
	// level." (reported in langchain-ai/langchainjs#9804 and
	// goruck/home-generative-agent#545).
	if f.Parameters["type"] != "object" {
		add("parameters type object", "", fmt.Sprintf("type is %v", f.Parameters["type"]))
	}
	for _, kw := range []string{"oneOf", "anyOf", "allOf", "enum", "const", "not"} {
		if _, ok := f.Parameters[kw]; ok {
			add("nothing but an object at the top level", "", kw+" at the top level")
		}
	}
	// "Invalid schema for function 'f': In context=('properties', 'x'),
	// array schema missing items." (reported in
	// streamnative/streamnative-mcp-server#26, also for a type list that
	// includes "array": campfirein/byterover-cli#42).
	walkSchema(f.Parameters, "", func(m map[string]any, at string) {
		if _, has := m["items"]; !has && typeNames(m["type"])["array"] {
			add("array schema with items", at, "array schema missing items")
		}
	})
	return out
}

// anthropicRejections applies Anthropic's input_schema rules.
func anthropicRejections(f function) []rejection {
	var out []rejection
	add := func(rule, where, detail string) {
		out = append(out, rejection{rule: "anthropic: " + rule, function: f.Name, where: where, detail: detail})
	}
	if !anthropicName.MatchString(f.Name) {
		add("tool name", "", "not "+anthropicName.String())
	}
	// "tools.N.custom.input_schema.type: Input should be 'object'"; the
	// tool use documentation: input_schema is "a JSON Schema object".
	if f.Parameters["type"] != "object" {
		add("input_schema type object", "", fmt.Sprintf("type is %v", f.Parameters["type"]))
	}
	// "tools.N.custom.input_schema: input_schema does not support oneOf,
	// allOf, or anyOf at the top level" (reported in
	// anthropics/claude-code#5319).
	for _, kw := range []string{"oneOf", "anyOf", "allOf"} {
		if _, ok := f.Parameters[kw]; ok {
			add("no composition at the top level", "", kw+" at the top level")
		}
	}
	props, _ := f.Parameters["properties"].(map[string]any)
	for _, name := range keysOf(props) {
		if !anthropicPropertyKey.MatchString(name) {
			add("property keys", name, "not "+anthropicPropertyKey.String())
		}
	}
	// "tools.N.custom.input_schema: JSON schema is invalid. It must match
	// JSON Schema draft 2020-12" (reported in
	// acomagu/vscode-as-mcp-server#6).
	if err := compile2020(f.Parameters); err != nil {
		add("JSON Schema draft 2020-12", "", err.Error())
	}
	return out
}

// compile2020 checks a schema against the draft 2020-12 meta-schema.
func compile2020(schema map[string]any) error {
	b, err := json.Marshal(schema)
	if err != nil {
		return err
	}
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(b))
	if err != nil {
		return err
	}
	c := jsonschema.NewCompiler()
	c.DefaultDraft(jsonschema.Draft2020)
	c.UseRegexpEngine(func(s string) (jsonschema.Regexp, error) { return anyPattern(s), nil }) // ECMA-262 syntax is Go's business elsewhere
	const url = "mcp-tool:///parameters.json"
	if err := c.AddResource(url, doc); err != nil {
		return err
	}
	_, err = c.Compile(url)
	return err
}

type anyPattern string

func (p anyPattern) String() string        { return string(p) }
func (anyPattern) MatchString(string) bool { return true }

// typeNames returns the names a type keyword's value lists.
func typeNames(t any) map[string]bool {
	out := map[string]bool{}
	switch v := t.(type) {
	case string:
		out[v] = true
	case []any:
		for _, x := range v {
			if s, ok := x.(string); ok {
				out[s] = true
			}
		}
	}
	return out
}

// walkSchema calls fn for schema and every schema inside it, with a JSON
// pointer to where it is.
func walkSchema(schema any, at string, fn func(m map[string]any, at string)) {
	m, ok := schema.(map[string]any)
	if !ok {
		return
	}
	fn(m, at)
	for _, k := range keysOf(m) {
		switch v := m[k].(type) {
		case map[string]any:
			switch k {
			case "properties", "patternProperties", "dependentSchemas", "$defs", "definitions":
				for _, name := range keysOf(v) {
					walkSchema(v[name], at+"/"+k+"/"+name, fn)
				}
			case "items", "additionalProperties", "not", "if", "then", "else", "contains", "propertyNames",
				"unevaluatedItems", "unevaluatedProperties", "contentSchema", "additionalItems":
				walkSchema(v, at+"/"+k, fn)
			}
		case []any:
			switch k {
			case "anyOf", "oneOf", "allOf", "prefixItems", "items":
				for i, s := range v {
					walkSchema(s, fmt.Sprintf("%s/%s/%d", at, k, i), fn)
				}
			}
		}
	}
}

// geminiPython returns the Python of the test peers' virtual environment
// when it has google-genai, or why not.
func geminiPython() (string, string) {
	peers := os.Getenv("MCPO_TEST_PEERS")
	if peers == "" {
		return "", "MCPO_TEST_PEERS is not set: run `make peers` and set it to check the documents with google-genai"
	}
	py := filepath.Join(peers, "venv", "bin", "python")
	if out, err := exec.Command(py, "-c", "import google.genai").CombinedOutput(); err != nil {
		return "", fmt.Sprintf("google-genai is not installed in %s (`make peers` installs it): %v: %s", py, err, bytes.TrimSpace(out))
	}
	return py, ""
}

// geminiRejections runs testdata/gemini_schemas.py over the functions.
func geminiRejections(t *testing.T, py string, fs []function) []rejection {
	t.Helper()
	in, err := json.Marshal(fs)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, py, filepath.Join("testdata", "gemini_schemas.py"))
	cmd.Stdin = bytes.NewReader(in)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("gemini_schemas.py: %v: %s", err, stderr.Bytes())
	}
	var res struct {
		Versions   map[string]string `json:"versions"`
		Checked    int               `json:"checked"`
		Rejections []struct {
			Name, Argument, Type, Message string
			Loc                           []string
		} `json:"rejections"`
	}
	if err := json.Unmarshal(out, &res); err != nil {
		t.Fatalf("gemini_schemas.py: %v: %.300s", err, out)
	}
	t.Logf("google-genai %s (pydantic %s) checked %d schemas", res.Versions["google-genai"], res.Versions["pydantic"], res.Checked)
	var rs []rejection
	for _, r := range res.Rejections {
		rs = append(rs, rejection{
			rule:     "gemini: " + geminiRule(r.Type, r.Loc, r.Message),
			function: r.Name,
			where:    strings.TrimSuffix(r.Argument+"/"+strings.Join(r.Loc, "/"), "/"),
			detail:   r.Type + ": " + r.Message,
		})
	}
	return rs
}

// geminiRule names what a google-genai error is about.
func geminiRule(typ string, loc []string, msg string) string {
	last := ""
	if len(loc) > 0 {
		last = loc[len(loc)-1]
	}
	switch {
	case typ == "extra_forbidden" && strings.HasPrefix(last, "x-"):
		return "x- extension keyword"
	case typ == "extra_forbidden":
		return "keyword " + last
	case strings.Contains(msg, "'list' object has no attribute 'upper'"):
		return "type list"
	case len(loc) >= 2 && loc[len(loc)-2] == "enum":
		return "enum value that is not a string"
	case typ == "model_attributes_type":
		return "boolean schema"
	}
	return typ
}

// TestDocumentsSuitLLMProviders turns every operation of the documents of
// the test corpus into a function the way LLM clients do (name =
// operationId, parameters = the request body's schema) and checks it
// against what OpenAI, Anthropic and Gemini refuse: a refused function
// makes the provider refuse the whole request, every tool with it.
func TestDocumentsSuitLLMProviders(t *testing.T) {
	var fs []function
	for _, d := range corpusDocuments() {
		if !d.tagged { // the aggregate has the same functions again
			fs = append(fs, functions(t, d.build(t).JSON("/"))...)
		}
	}
	check := func(t *testing.T, rs []rejection) {
		t.Helper()
		counts := map[string]int{}
		for _, r := range rs {
			counts[r.rule]++
		}
		rules := keysOf(counts)
		for _, rule := range rules {
			t.Errorf("%d rejections: %s", counts[rule], rule)
		}
		sort.SliceStable(rs, func(i, j int) bool { return rs[i].rule < rs[j].rule })
		for i, r := range rs {
			if i == 100 {
				t.Errorf("... and %d more", len(rs)-i)
				break
			}
			t.Error(r)
		}
	}
	t.Run("openai", func(t *testing.T) {
		var rs []rejection
		for _, f := range fs {
			rs = append(rs, openAIRejections(f)...)
		}
		check(t, rs)
	})
	t.Run("anthropic", func(t *testing.T) {
		var rs []rejection
		for _, f := range fs {
			rs = append(rs, anthropicRejections(f)...)
		}
		check(t, rs)
	})
	t.Run("gemini", func(t *testing.T) {
		py, why := geminiPython()
		if py == "" {
			t.Skip(why)
		}
		check(t, geminiRejections(t, py, fs))
	})
	t.Logf("%d functions checked", len(fs))
}
