"""A large index in Helm's block layout is parsed a few charts at a time: the catalog must get
exactly what the whole document says (the same versions, the same skip reasons, the same
errors), with a fraction of the whole document's memory."""

from __future__ import annotations

import tracemalloc
from collections.abc import Callable

import pytest

from openpitrix.fetch import INDEX_PARSE_ERROR
from openpitrix.fetch import FetchError as IndexFetchError
from openpitrix.repos import helm
from openpitrix.repos.helm import ParsedIndex, parse_index
from openpitrix.repos.index_chunks import PIECE_BYTES, split_index

REPO = "http://h/charts"


def _version(chart: str, i: int, j: int) -> str:
    name = chart.strip("'\"")
    return (
        f"  - apiVersion: v2\n"
        f"    name: {name}\n"
        f"    version: 1.{j}.{i % 7}\n"
        f'    appVersion: "{j}.0"\n'
        f"    description: |\n"
        f"      {name} release {j}, with a line that looks like a key:\n"
        f"  \n"
        f"      entries: not really\n"
        f"    home: https://example.org/{name}\n"
        f"    keywords:\n"
        f"    - kw{i % 5}\n"
        f"    maintainers:\n"
        f"    - name: team {name}\n"
        f"      email: team@example.org\n"
        f"    annotations:\n"
        f"      images: |\n"
        f"        - image: docker.io/{name}:{j}\n"
        f'    created: "2024-01-{1 + j % 28:02d}T00:00:00.123456789+02:00"\n'
        f"    digest: {i:08x}{j:08x}\n"
        f"    urls:\n"
        f"    - {name}-1.{j}.{i % 7}.tgz\n"
    )


def _index(
    charts: int, *, header: str = "apiVersion: v1\n", extra: dict[int, str] | None = None
) -> str:
    """A block-layout index of `charts` charts x 8 versions, comments and blank lines between
    charts, some chart names quoted, and `extra` text inserted before chart i."""
    parts = [header, "entries:\n"]
    for i in range(charts):
        if extra and i in extra:
            parts.append(extra[i])
        if i % 50 == 0:
            parts.append("# a comment at column 0 inside entries\n\n")
        chart = f'"chart-{i:04d}"' if i % 3 == 0 else f"chart-{i:04d}"
        parts.append(f"  {chart}:\n")
        parts.extend(_version(chart, i, j) for j in range(8))
    parts.append('generated: "2024-02-01T00:00:00Z"\n')
    return "".join(parts)


def _whole(body: bytes, monkeypatch: pytest.MonkeyPatch) -> ParsedIndex:
    with monkeypatch.context() as patch:
        patch.setattr(helm, "split_index", lambda *args: None)
        return parse_index(body, REPO)


def _pieces_of(body: bytes) -> int:
    split = split_index(body, 0, "marker")
    return 0 if split is None else len(split.cuts) - 1


def test_large_index_is_split_and_parses_to_what_the_whole_document_says(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    body = _index(400).encode()
    assert _pieces_of(body) >= 3

    pieces = parse_index(body, REPO)

    assert pieces == _whole(body, monkeypatch)
    assert pieces.version_count == 400 * 8
    first = pieces.charts["chart-0000"][0]
    assert first.description.startswith("chart-0000 release 7, with a line")
    assert "entries: not really" in first.description
    assert first.package_url == "http://h/charts/chart-0000-1.7.0.tgz"


def test_crlf_and_bom_index_parses_like_the_whole_document(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    body = b"\xef\xbb\xbf" + _index(400).replace("\n", "\r\n").encode()
    assert _pieces_of(body) >= 3

    assert parse_index(body, REPO) == _whole(body, monkeypatch)


def test_chart_names_starting_with_a_dash_are_charts_and_dash_items_are_versions(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # At the chart names' indentation "- x" is a version of the chart above, "-x:" a chart.
    extra = {i: f"  -dash-{i}:\n" + _version("dash", i, 0) for i in range(0, 400, 40)}
    body = _index(400, extra=extra).encode()
    split = split_index(body, 0, "marker")
    assert split is not None and len(split.cuts) - 1 >= 3
    assert all(
        body[cut : cut + 3] != b"  -" or body[cut + 3 : cut + 4] != b" " for cut in split.cuts
    )

    parsed = parse_index(body, REPO)

    assert parsed == _whole(body, monkeypatch)
    assert parsed.charts["-dash-40"][0].name == "-dash-40"
    assert parsed.version_count == 400 * 8 + 10


def test_vm_index_kind_is_read_from_the_top_level_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    text = _index(400, header="api_version: v1\n").replace("apiVersion: v2", "other: v2")
    body = text.replace("appVersion:", "other_version:").encode()
    assert _pieces_of(body) >= 3

    parsed = parse_index(body, REPO)

    assert parsed == _whole(body, monkeypatch)
    assert {v.package_kind for versions in parsed.charts.values() for v in versions} == {"vm"}


def test_invalid_entries_in_every_piece_are_skipped_with_the_same_reasons(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    broken = (
        "  - not-a-mapping\n  - {name: x}\n  - {version: 9.9.9}\n"
        "  - {name: x, version: 9.9.9, urls: ['file:///etc/passwd']}\n"
    )
    extra = {i: f"  broken-{i}:\n{broken}  scalar-{i}: 5\n" for i in (0, 150, 399)}
    body = _index(400, extra=extra).encode()
    assert _pieces_of(body) >= 3

    parsed = parse_index(body, REPO)

    assert parsed == _whole(body, monkeypatch)
    assert len(parsed.skipped) == 3 * 5
    assert any("not http(s)" in reason for reason in parsed.skipped)


@pytest.mark.parametrize(
    "late",
    [
        # The same chart name again, pieces apart: the whole document keeps the last.
        "  chart-0001:\n  - {name: chart-0001, version: 42.0.0}\n",
        # An alias to an anchor defined pieces earlier.
        "  aliased:\n  - *first\n",
    ],
)
def test_what_one_piece_cannot_say_alone_is_parsed_from_the_whole_document(
    late: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    text = _index(400, extra={399: late})
    text = text.replace(
        "  - apiVersion: v2\n    name: chart-0000\n",
        "  - &first\n    apiVersion: v2\n    name: chart-0000\n",
        1,
    )
    body = text.encode()
    assert _pieces_of(body) >= 3

    parsed = parse_index(body, REPO)

    assert parsed == _whole(body, monkeypatch)
    if "42.0.0" in late:
        assert [v.version for v in parsed.charts["chart-0001"]] == ["42.0.0"]
        assert list(parsed.charts).index("chart-0001") == 1
    else:
        assert parsed.charts["aliased"][0].name == "aliased"
        assert parsed.charts["aliased"][0].version == "1.0.0"


def test_a_syntax_error_in_a_late_piece_reports_the_whole_documents_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    body = _index(400, extra={399: "  bad:\n  - {name: bad, version: [1.0\n"}).encode()
    assert _pieces_of(body) >= 3

    with pytest.raises(IndexFetchError) as piecewise:
        parse_index(body, REPO)
    with pytest.raises(IndexFetchError) as whole:
        _whole(body, monkeypatch)

    assert piecewise.value.code == INDEX_PARSE_ERROR
    assert piecewise.value.message == whole.value.message


def test_flow_style_and_small_indexes_are_parsed_whole() -> None:
    flow = b"apiVersion: v1\nentries: {a: [{name: a, version: 1.0.0}]}\n" + b"#" * 3 * PIECE_BYTES
    small = _index(2).encode()

    assert split_index(flow, 0, "marker") is None
    assert split_index(small, 0, "marker") is None
    assert list(parse_index(flow, REPO).charts) == ["a"]


def test_parsing_piece_by_piece_holds_a_fraction_of_the_whole_documents_memory(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    body = _index(600).encode()

    def transient_peak(parse: Callable[[], ParsedIndex]) -> int:
        """Peak Python memory of the parse beyond what its result keeps."""
        tracemalloc.start()
        try:
            result = parse()
            current, peak = tracemalloc.get_traced_memory()
            assert result.version_count == 600 * 8
            return peak - current
        finally:
            tracemalloc.stop()

    piecewise = transient_peak(lambda: parse_index(body, REPO))
    whole = transient_peak(lambda: _whole(body, monkeypatch))

    assert piecewise < whole / 2
