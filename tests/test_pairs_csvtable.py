"""The shared CSV reader (manifest, folder import table) and the shared compression check."""

import pytest

from hralign.errors import HRAlignError
from hralign.pairs.csvtable import read_csv_records
from hralign.pairs.writer import check_compression


def test_read_csv_records_strips_cells_and_numbers_lines(tmp_path):
    p = tmp_path / "t.csv"
    p.write_text(" a , b ,c\n x , y ,\n1,2,3\n", encoding="utf-8")
    assert read_csv_records(p, ("a", "b"), "table") == [(2, {"a": "x", "b": "y", "c": ""}), (3, {"a": "1", "b": "2", "c": "3"})]


@pytest.mark.parametrize("content,phrase", [
    (None, "table not found"),
    ("a,c\n1,2\n", "missing ['b']"),
    ("a,b\n1,\n", "line 2: column `b` is empty"),
    ("a,b\n", "header but no rows"),
    (b"a,b\n\xff\xfe,1\n", "not UTF-8"),
])
def test_read_csv_records_refuses_bad_tables_in_one_line(tmp_path, content, phrase):
    p = tmp_path / "t.csv"
    if isinstance(content, bytes):
        p.write_bytes(content)
    elif content is not None:
        p.write_text(content, encoding="utf-8")
    with pytest.raises(HRAlignError) as e:
        read_csv_records(p, ("a", "b"), "table", optional=("split",))
    assert phrase in str(e.value) and str(p) in str(e.value) and "\n" not in str(e.value)


def test_check_compression_reads_none_and_refuses_unknown():
    assert check_compression("none") is None and check_compression("NONE") is None and check_compression(None) is None
    assert check_compression("blosc") == "blosc"
    with pytest.raises(HRAlignError, match="`compression` should be one of none, gzip, lzf, blosc but the value passed is 'zip'"):
        check_compression("zip")
