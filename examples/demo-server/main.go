// Command demo-server is a small MCP (Model Context Protocol) server for
// trying out caddy-mcpo on a machine that has nothing but Go installed.
//
// It offers five tools:
//
//   - add: adds two integers (text plus structured output)
//   - echo: repeats a message
//   - now: the current time in an IANA time zone
//   - tiny_image: a generated 8x8 PNG
//   - weather: canned, made-up weather for a few cities (structured output)
//
// By default it speaks MCP over stdio, which is how the example Caddyfile
// starts it:
//
//	go run ./examples/demo-server
//
// With -http it serves Streamable HTTP at /mcp on the given address instead:
//
//	go run ./examples/demo-server -http 127.0.0.1:8081
//	# MCP endpoint: http://127.0.0.1:8081/mcp
//
// Logs always go to stderr, because in stdio mode stdout carries the protocol.
package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"log"
	"log/slog"
	"maps"
	"math"
	"net/http"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"
	"time"
	_ "time/tzdata" // the "now" tool works even where the OS has no zoneinfo

	"github.com/mark3labs/mcp-go/mcp"
	"github.com/mark3labs/mcp-go/server"
)

func main() {
	httpAddr := flag.String("http", "", "serve Streamable HTTP at /mcp on this address (e.g. 127.0.0.1:8081) instead of stdio")
	flag.Parse()
	log.SetOutput(os.Stderr)
	log.SetPrefix("demo-server: ")

	s := newServer()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	if *httpAddr == "" {
		log.Print("serving MCP over stdio")
		if err := server.NewStdioServer(s).Listen(ctx, os.Stdin, os.Stdout); err != nil && !errors.Is(err, context.Canceled) {
			log.Fatal(err)
		}
		return
	}

	httpServer := server.NewStreamableHTTPServer(s)
	go func() {
		<-ctx.Done()
		shutdownCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = httpServer.Shutdown(shutdownCtx)
	}()
	log.Printf("serving MCP over Streamable HTTP at http://%s/mcp", *httpAddr)
	if err := httpServer.Start(*httpAddr); err != nil && !errors.Is(err, http.ErrServerClosed) {
		log.Fatal(err)
	}
}

// newServer builds the MCP server with all demo tools registered.
func newServer() *server.MCPServer {
	s := server.NewMCPServer("caddy-mcpo-demo", "1.0.0",
		server.WithToolCapabilities(false),
		server.WithRecovery(),
		server.WithLogger(slog.New(slog.NewTextHandler(os.Stderr, nil))),
		server.WithInstructions("Demo tools for caddy-mcpo: arithmetic, echo, clock, a tiny image and fake weather."),
	)
	// Every demo tool only computes or reads something: none has side effects.
	pure := func(idempotent, openWorld bool) mcp.ToolOption {
		return mcp.WithToolAnnotation(mcp.ToolAnnotation{
			ReadOnlyHint:    mcp.ToBoolPtr(true),
			DestructiveHint: mcp.ToBoolPtr(false),
			IdempotentHint:  mcp.ToBoolPtr(idempotent),
			OpenWorldHint:   mcp.ToBoolPtr(openWorld),
		})
	}

	s.AddTool(mcp.NewTool("add",
		mcp.WithToolTitle("Add two integers"),
		mcp.WithDescription(`Adds two integers and returns the sum, as plain text (e.g. "42") and as structured content {"sum": 42}.`),
		mcp.WithInteger("a", mcp.Required(), mcp.Description("First addend")),
		mcp.WithInteger("b", mcp.Required(), mcp.Description("Second addend")),
		mcp.WithOutputSchema[addResult](),
		pure(true, false),
	), handleAdd)

	s.AddTool(mcp.NewTool("echo",
		mcp.WithToolTitle("Echo a message"),
		mcp.WithDescription("Returns the message, repeated `repeat` times (1 to 5, default 1) and separated by spaces."),
		mcp.WithString("message", mcp.Required(), mcp.Description("Text to echo back")),
		mcp.WithInteger("repeat", mcp.Min(1), mcp.Max(5), mcp.DefaultNumber(1), mcp.Description("How many times to repeat the message")),
		pure(true, false),
	), handleEcho)

	s.AddTool(mcp.NewTool("now",
		mcp.WithToolTitle("Current time"),
		mcp.WithDescription("Returns the current time in RFC 3339 format in the given IANA time zone (default UTC). An unknown zone is reported as a tool error."),
		mcp.WithString("timezone", mcp.DefaultString("UTC"), mcp.Description(`IANA time zone name, e.g. "Europe/Paris" or "America/New_York"`)),
		pure(false, false),
	), handleNow)

	s.AddTool(mcp.NewTool("tiny_image",
		mcp.WithToolTitle("Tiny image"),
		mcp.WithDescription("Returns a short caption and an 8x8 gradient PNG image generated in memory."),
		pure(true, false),
	), handleTinyImage)

	s.AddTool(mcp.NewTool("weather",
		mcp.WithToolTitle("Weather (fake)"),
		mcp.WithDescription("Returns canned, made-up weather for a city, as structured content and as the same JSON in text. No real weather service is contacted."),
		mcp.WithString("city", mcp.Required(), mcp.Enum(slices.Sorted(maps.Keys(fakeWeather))...), mcp.Description("City to report on")),
		mcp.WithOutputSchema[weatherReport](),
		pure(true, false),
	), handleWeather)
	return s
}

type addResult struct {
	Sum int64 `json:"sum" jsonschema:"The sum a + b"`
}

func handleAdd(_ context.Context, req mcp.CallToolRequest) (*mcp.CallToolResult, error) {
	var args struct {
		A *int64 `json:"a"`
		B *int64 `json:"b"`
	}
	if err := req.BindArguments(&args); err != nil || args.A == nil || args.B == nil {
		return mcp.NewToolResultError(`"a" and "b" must both be given as integers`), nil
	}
	a, b := *args.A, *args.B
	if (b > 0 && a > math.MaxInt64-b) || (b < 0 && a < math.MinInt64-b) {
		return mcp.NewToolResultError("the sum does not fit in a 64-bit integer"), nil
	}
	sum := addResult{Sum: a + b}
	return mcp.NewToolResultStructured(sum, fmt.Sprint(sum.Sum)), nil
}

func handleEcho(_ context.Context, req mcp.CallToolRequest) (*mcp.CallToolResult, error) {
	args := struct {
		Message *string `json:"message"`
		Repeat  *int    `json:"repeat"`
	}{Repeat: new(1)}
	if err := req.BindArguments(&args); err != nil || args.Message == nil {
		return mcp.NewToolResultError(`"message" must be a string and "repeat" an integer`), nil
	}
	if n := *args.Repeat; n < 1 || n > 5 {
		return mcp.NewToolResultErrorf("repeat must be between 1 and 5, got %d", n), nil
	}
	return mcp.NewToolResultText(strings.Join(slices.Repeat([]string{*args.Message}, *args.Repeat), " ")), nil
}

func handleNow(_ context.Context, req mcp.CallToolRequest) (*mcp.CallToolResult, error) {
	name := req.GetString("timezone", "UTC")
	loc, err := time.LoadLocation(name)
	if err != nil {
		return mcp.NewToolResultErrorf(`unknown time zone %q: use an IANA name such as "UTC", "Europe/Paris" or "America/New_York"`, name), nil
	}
	return mcp.NewToolResultText(time.Now().In(loc).Format(time.RFC3339)), nil
}

// tinyPNG is an 8x8 red-to-blue gradient, encoded once at start-up.
var tinyPNG = func() string {
	img := image.NewNRGBA(image.Rect(0, 0, 8, 8))
	for y := range 8 {
		for x := range 8 {
			img.Set(x, y, color.NRGBA{R: uint8(255 - 32*x), G: uint8(32 * y), B: uint8(32 * x), A: 255})
		}
	}
	var buf bytes.Buffer
	if err := png.Encode(&buf, img); err != nil {
		panic(err)
	}
	return base64.StdEncoding.EncodeToString(buf.Bytes())
}()

func handleTinyImage(context.Context, mcp.CallToolRequest) (*mcp.CallToolResult, error) {
	return mcp.NewToolResultImage("An 8x8 gradient, red to blue.", tinyPNG, "image/png"), nil
}

type weatherReport struct {
	Temperature float64 `json:"temperature" jsonschema:"Temperature in degrees Celsius"`
	Conditions  string  `json:"conditions" jsonschema:"Short description of the sky"`
	Humidity    int     `json:"humidity" jsonschema:"Relative humidity in percent"`
}

var fakeWeather = map[string]weatherReport{
	"Paris":    {Temperature: 18.5, Conditions: "partly cloudy", Humidity: 62},
	"London":   {Temperature: 14, Conditions: "light rain", Humidity: 81},
	"Tokyo":    {Temperature: 23.2, Conditions: "sunny", Humidity: 55},
	"New York": {Temperature: 20.1, Conditions: "clear", Humidity: 48},
	"Sydney":   {Temperature: 25.7, Conditions: "windy", Humidity: 60},
}

func handleWeather(_ context.Context, req mcp.CallToolRequest) (*mcp.CallToolResult, error) {
	city := req.GetString("city", "")
	report, ok := fakeWeather[city]
	if !ok {
		return mcp.NewToolResultErrorf("unknown city %q: choose one of %s", city, strings.Join(slices.Sorted(maps.Keys(fakeWeather)), ", ")), nil
	}
	text, err := json.Marshal(report)
	if err != nil {
		return nil, err
	}
	return mcp.NewToolResultStructured(report, string(text)), nil
}
