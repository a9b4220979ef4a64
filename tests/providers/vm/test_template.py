"""The cluster.json.tmpl engine: OpenPitrix's quoted actions as typed JSON values, the Go
template subset, and errors that name the file and line."""

from __future__ import annotations

import json
from typing import Any

import pytest

from openpitrix.providers.vm.template import TemplateError, render, render_json

SETTINGS: dict[str, Any] = {
    "cluster": {
        "name": "shop",
        "subnet": "",
        "ha": True,
        "ratio": 0.5,
        "whole": 2.0,
        "web": {"cpu": 2, "memory": 4096},
        "none": None,
        "tags": ["a", "b"],
        "labels": {"zone": "pek3", "tier": "web"},
    }
}


def test_a_quoted_action_becomes_a_json_value_of_the_settings_own_type() -> None:
    source = """{
  "name": "{{.cluster.name}}",
  "cpu": "{{.cluster.web.cpu}}",
  "memory": "{{ .cluster.web.memory }}",
  "ha": "{{.cluster.ha}}",
  "ratio": "{{.cluster.ratio}}",
  "whole": "{{.cluster.whole}}",
  "none": "{{.cluster.none}}",
  "subnet": "{{.cluster.subnet}}"
}"""
    assert render_json(source, SETTINGS) == {
        "name": "shop",
        "cpu": 2,
        "memory": 4096,
        "ha": True,
        "ratio": 0.5,
        "whole": 2,
        "none": None,
        "subnet": "",
    }
    # Byte for byte what Go's encoding/json printed (2.0 prints as 2).
    text = render('"{{.cluster.web.cpu}}" "{{.cluster.whole}}" "{{.cluster.ha}}"', SETTINGS)
    assert text == "2 2 true"


def test_strings_are_quoted_and_escaped_so_the_json_stays_valid() -> None:
    tricky = 'say "hi"\\ <b>&\n\t' + "\u2028 ünï"
    rendered = render('"{{.v}}"', {"v": tricky})
    assert rendered == ('"say \\"hi\\"\\\\ \\u003cb\\u003e\\u0026\\n\\t\\u2028 ünï"')
    assert json.loads(rendered) == tricky
    # Inside a longer string the text is inserted escaped, without quotes of its own.
    assert render_json('{"path": "/data/{{.v}}/x"}', {"v": 'a"b'}) == {"path": '/data/a"b/x'}


def test_maps_and_lists_print_as_json() -> None:
    assert render_json(
        '{"tags": "{{.cluster.tags}}", "labels": "{{.cluster.labels}}"}', SETTINGS
    ) == {
        "tags": ["a", "b"],
        "labels": {"tier": "web", "zone": "pek3"},
    }


def test_a_missing_key_is_an_error_naming_the_file_line_and_path() -> None:
    source = '{\n  "name": "{{.cluster.name}}",\n  "cpu": "{{.cluster.db.cpu}}"\n}'
    with pytest.raises(TemplateError) as caught:
        render(source, SETTINGS)
    assert str(caught.value) == "cluster.json.tmpl:3: .cluster.db: no such key in the settings"
    with pytest.raises(TemplateError, match=r":1: \.cluster\.name is a string, it has no key"):
        render("{{.cluster.name.first}}", SETTINGS)


def test_if_else_if_else_and_comparisons() -> None:
    source = (
        "{{if eq .cluster.web.cpu 1}}one{{else if gt .cluster.web.cpu 1}}more{{else}}none{{end}}"
        "|{{if .cluster.subnet}}set{{else}}unset{{end}}"
        '|{{if and .cluster.ha (ne .cluster.name "x")}}yes{{end}}'
        "|{{if not .cluster.ha}}no{{else}}ha{{end}}"
        "|{{if or .cluster.subnet .cluster.name}}{{.cluster.name}}{{end}}"
    )
    assert render(source, SETTINGS) == "more|unset|yes|ha|shop"


def test_range_over_lists_and_maps_with_variables_and_trim_markers() -> None:
    source = """[
  {{- range $i, $tag := .cluster.tags }}
  {{- if $i }},{{ end }}
  {"tag": "{{ $tag }}", "at": "{{ $i }}"}
  {{- end }}
]"""
    assert render_json(source, SETTINGS) == [{"tag": "a", "at": 0}, {"tag": "b", "at": 1}]
    # Maps range in key order, as Go's do; `.` is the element inside the loop.
    keys = render("{{range $k, $v := .cluster.labels}}{{$k}}={{.}};{{end}}", SETTINGS)
    assert keys == "tier=web;zone=pek3;"
    assert render("{{range .cluster.none}}x{{else}}empty{{end}}", SETTINGS) == "empty"
    assert render("{{with .cluster.web}}{{.cpu}}{{end}} {{len .cluster.tags}}", SETTINGS) == "2 2"
    assert render(
        '{{index .cluster.labels "zone"}} {{ $n := 1 }}{{ $n = 5 }}{{ $n }}', SETTINGS
    ) == ("pek3 5")
    assert render("{{ .cluster.tags | len }} {{/* a comment */}}!", SETTINGS) == "2 !"


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ('{{ define "x" }}{{ end }}', "{{define}} is not supported here"),
        ('{{ printf "%d" 1 }}', "function 'printf' is not supported"),
        ("{{ .a | quote }}", "function 'quote' is not supported"),
        ("{{ if .a }}", "{{if}} has no {{end}}"),
        ("x\n{{ end }}", "unexpected {{end}}"),
        ("{{ .a ", "unclosed action"),
        ('"{{ if .a }}x{{ end }}"', '"{{if ...}}" cannot be quoted'),
        ("{{ lt .s 1 }}", "lt: cannot order string and int"),
        ("{{ $nope }}", "undefined variable $nope"),
    ],
)
def test_unsupported_or_broken_templates_are_errors_naming_the_line(
    source: str, message: str
) -> None:
    with pytest.raises(TemplateError) as caught:
        render(source, {"a": 1, "s": "x"}, file="pkg/cluster.json.tmpl")
    assert caught.value.file == "pkg/cluster.json.tmpl"
    assert message in caught.value.message
    assert str(caught.value).startswith(f"pkg/cluster.json.tmpl:{caught.value.line}: ")
    assert caught.value.line == source.count("\n") + 1


def test_rendered_text_that_is_not_json_is_reported_with_its_line() -> None:
    # OpenPitrix's rewrite makes only the first of two actions in one string a value.
    with pytest.raises(TemplateError, match="the rendered text is not JSON"):
        render_json('{\n"n": "{{.cluster.name}}-{{.cluster.name}}"\n}', SETTINGS)


def test_output_and_work_are_bounded() -> None:
    big = {"items": list(range(50_000)), "s": "x" * 1000}
    with pytest.raises(TemplateError, match="output exceeds 1000 bytes"):
        render("{{range .items}}{{$.s}}{{end}}", big, max_output=1000)
    with pytest.raises(TemplateError, match="over 500 steps"):
        render("{{range .items}}{{end}}", big, max_steps=500)
    nested = "{{if 1}}" * 60 + "{{end}}" * 60
    with pytest.raises(TemplateError, match="nested deeper than"):
        render(nested, {})


def test_output_does_not_depend_on_the_order_settings_were_built_in() -> None:
    source = '{"all": "{{.m}}", "keys": [{{range $k, $v := .m}}"{{$k}}",{{end}} "end"]}'
    one = render(source, {"m": {"b": 1, "a": {"y": 2, "x": 1}}})
    two = render(source, {"m": {"a": {"x": 1, "y": 2}, "b": 1}})
    assert one == two == '{"all": {"a":{"x":1,"y":2},"b":1}, "keys": ["a","b", "end"]}'
