from datetime import date

import pytest

from csvguard import Schema, validate_file, validate_rows


def test_a_bad_row_fails_alone():
    schema = Schema({"id": int, "day": "date"})
    report = validate_rows([{"id": "1", "day": "2024-03-04"},
                            {"id": "x", "day": "03/04/24"},
                            {"id": "3", "day": "2024-03-06"}], schema)
    assert [row["id"] for row in report.rows] == [1, 3]
    assert report.rows[0]["day"] == date(2024, 3, 4)
    assert [str(e) for e in report.errors][0].startswith("line 3, column 'id'")
    assert len(report.errors) == 2


def test_a_missing_column_rejects_the_file(tmp_path):
    path = tmp_path / "orders.csv"
    path.write_text("order_id,amount\n1,2.5\n", encoding="utf-8")
    with pytest.raises(ValueError, match="order_date"):
        validate_file(path, Schema({"order_id": int, "order_date": "date", "amount": float}))


def test_cp1252_files_are_read_and_reported(tmp_path):
    path = tmp_path / "names.csv"
    path.write_bytes("name,active\nZoë,yes\n".encode("cp1252"))
    report = validate_file(path, Schema({"name": "str", "active": "bool"}))
    assert report.rows == [{"name": "Zoë", "active": True}]
    assert report.encoding == "cp1252"
