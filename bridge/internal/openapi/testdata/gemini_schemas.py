"""Checks function parameters the way google-genai (Gemini's Python SDK) takes them.

Reads a JSON list of functions ({"tool", "name", "description", "parameters"})
on standard input and validates each one's parameter schema with
google.genai.types.Schema.model_validate: the schema without its properties,
then each property's schema alone, so that one rejected argument does not hide
another. Writes {"versions": {...}, "checked": N, "rejections": [...]} on
standard output; each rejection names the tool, the argument ("" for the schema
itself), where in its schema the problem is, pydantic's error type (or the
exception raised instead of a validation error) and its message.

Run by TestDocumentsSuitLLMProviders (llm_test.go) with the Python of the test
peers' virtual environment.
"""

import json
import sys
from importlib import metadata

import pydantic
from google.genai import types


def check(schema):
    """Returns the problems types.Schema finds in schema, as dicts."""
    try:
        types.Schema.model_validate(schema)
    except pydantic.ValidationError as e:
        return [
            {"loc": [str(x) for x in err["loc"]], "type": err["type"], "message": err["msg"]}
            for err in e.errors()
        ]
    except Exception as e:  # google-genai raises some errors outside pydantic
        return [{"loc": [], "type": type(e).__name__, "message": str(e)}]
    return []


def main():
    functions = json.load(sys.stdin)
    rejections = []
    checked = 0
    for f in functions:
        params = f.get("parameters")
        if not isinstance(params, dict):
            params = {}
        parts = [("", {k: v for k, v in params.items() if k != "properties"})]
        props = params.get("properties")
        if isinstance(props, dict):
            parts += sorted(props.items())
        for argument, schema in parts:
            checked += 1
            for p in check(schema):
                p.update(tool=f.get("tool", ""), name=f.get("name", ""), argument=argument)
                rejections.append(p)
    versions = {name: metadata.version(name) for name in ("google-genai", "pydantic")}
    json.dump({"versions": versions, "checked": checked, "rejections": rejections}, sys.stdout)


if __name__ == "__main__":
    main()
