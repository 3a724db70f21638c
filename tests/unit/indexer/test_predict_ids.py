"""Issue 14.7: predict's test ids are every id of the CSV as the csv module reads it, each once:
a row with an unbalanced quote keeps its id (it fails preprocessing as bad_row, so predict counts
it as failed, not missing) and a quoted id with a newline inside is one id, not a phantom."""

from __future__ import annotations

from indexer import predict


def test_test_ids_survive_bad_quoting(tmp_path):
    path = tmp_path / "test.csv"
    path.write_bytes(
        b"id,url\n"
        b"a,a.jpg\n"
        b'"q1","unclosed.jpg\n'
        b'"multi\nline",b.jpg\n'
        b"a,again.jpg\n"
        b"z,z.jpg\n"
    )
    assert predict.read_test_ids(str(path)) == ["a", "q1", "multi\nline", "z"]
