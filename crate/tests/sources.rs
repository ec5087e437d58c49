//! Integration tests for `saekit::sources`: every format read back exactly, column mapping, errors that
//! name the file and line, the skip policy, streaming in bounded batches, schema views and specs.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, Int64Array, ListArray, RecordBatch, StringArray, StructArray};
use arrow::datatypes::{DataType, Field, Float64Type, Int64Type, UInt64Type};
use parquet::arrow::ArrowWriter;
use parquet::file::properties::WriterProperties;
use saekit::error::Error;
use saekit::sources::{Format, OnError, Source, SourceSpec, TextField};
use serde_json::{Value, json};
use tempfile::TempDir;

// ---------------------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------------------

fn tmp() -> TempDir {
    tempfile::tempdir().expect("tempdir")
}

/// Writes `bytes` to `dir/name` (creating parent folders) and returns the path.
fn write(dir: &Path, name: &str, bytes: impl AsRef<[u8]>) -> PathBuf {
    let path = dir.join(name);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, bytes).unwrap();
    path
}

/// One JSON value per line. (`json!` objects have their keys sorted; where the order matters, use [`lines`].)
fn jsonl(rows: &[Value]) -> String {
    rows.iter().map(|r| format!("{r}\n")).collect()
}

/// Lines of text, each ended by a newline.
fn lines(lines: &[&str]) -> String {
    lines.iter().map(|l| format!("{l}\n")).collect()
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    enc.write_all(bytes).unwrap();
    enc.finish().unwrap()
}

fn zstd(bytes: &[u8]) -> Vec<u8> {
    zstd::stream::encode_all(bytes, 3).unwrap()
}

/// Writes `batch` as Parquet with at most `group_rows` rows per row group.
fn write_parquet(dir: &Path, name: &str, batch: &RecordBatch, group_rows: usize) -> PathBuf {
    let path = dir.join(name);
    let props = WriterProperties::builder().set_max_row_group_row_count(Some(group_rows)).build();
    let mut writer = ArrowWriter::try_new(std::fs::File::create(&path).unwrap(), batch.schema(), Some(props)).unwrap();
    writer.write(batch).unwrap();
    writer.close().unwrap();
    path
}

fn batch(columns: Vec<(&str, ArrayRef)>) -> RecordBatch {
    RecordBatch::try_from_iter(columns).unwrap()
}

/// All raw rows of a source, as one batch.
fn raw(source: &Source) -> RecordBatch {
    let batches: Vec<RecordBatch> = source.batches().unwrap().map(|b| b.unwrap().batch).collect();
    arrow::compute::concat_batches(&source.arrow_schema().unwrap(), &batches).unwrap()
}

/// All documents of a source, as one batch.
fn docs(source: &Source) -> RecordBatch {
    let docs = source.documents().unwrap();
    let schema = docs.schema();
    let batches: Vec<RecordBatch> = docs.map(|b| b.unwrap()).collect();
    arrow::compute::concat_batches(&schema, &batches).unwrap()
}

/// The error that reading a source's documents ends with (opening, inferring or reading).
fn read_error(source: &Source) -> Error {
    let docs = match source.documents() {
        Ok(docs) => docs,
        Err(e) => return e,
    };
    for batch in docs {
        if let Err(e) = batch {
            return e;
        }
    }
    panic!("reading succeeded, expected an error");
}

fn open_error(result: saekit::Result<Source>) -> Error {
    match result {
        Ok(source) => panic!("opened {:?}, expected an error", source.files()),
        Err(e) => e,
    }
}

fn names(batch: &RecordBatch) -> Vec<String> {
    batch.schema().fields().iter().map(|f| f.name().clone()).collect()
}

fn strings(batch: &RecordBatch, column: &str) -> Vec<Option<String>> {
    let col = batch.column_by_name(column).unwrap_or_else(|| panic!("no column {column}"));
    col.as_string::<i32>().iter().map(|v| v.map(str::to_string)).collect()
}

/// The non-null strings of a column (for columns that have no nulls).
fn texts(batch: &RecordBatch, column: &str) -> Vec<String> {
    strings(batch, column).into_iter().map(|v| v.expect("a null")).collect()
}

fn ints(batch: &RecordBatch, column: &str) -> Vec<Option<i64>> {
    batch.column_by_name(column).unwrap().as_primitive::<Int64Type>().iter().collect()
}

fn floats(batch: &RecordBatch, column: &str) -> Vec<Option<f64>> {
    batch.column_by_name(column).unwrap().as_primitive::<Float64Type>().iter().collect()
}

fn bools(batch: &RecordBatch, column: &str) -> Vec<Option<bool>> {
    batch.column_by_name(column).unwrap().as_boolean().iter().collect()
}

fn data_type(batch: &RecordBatch, column: &str) -> DataType {
    batch.schema().field_with_name(column).unwrap().data_type().clone()
}

fn sample_jsonl() -> String {
    lines(&[
        r#"{"text": "first doc", "id": 1, "score": 0.5, "ok": true, "tags": [1, 2]}"#,
        r#"{"text": "second, with \"quotes\"", "id": 2, "score": 1.25, "ok": false, "tags": []}"#,
        r#"{"text": "third\nline two", "id": 3, "score": -2.0, "ok": true, "tags": [3]}"#,
    ])
}

/// Checks a batch holds exactly [`sample_jsonl`].
fn assert_sample_rows(batch: &RecordBatch) {
    assert_eq!(names(batch), ["text", "id", "score", "ok", "tags"]);
    assert_eq!(texts(batch, "text"), ["first doc", "second, with \"quotes\"", "third\nline two"]);
    assert_eq!(ints(batch, "id"), [Some(1), Some(2), Some(3)]);
    assert_eq!(floats(batch, "score"), [Some(0.5), Some(1.25), Some(-2.0)]);
    assert_eq!(bools(batch, "ok"), [Some(true), Some(false), Some(true)]);
    let tags = batch.column_by_name("tags").unwrap().as_list::<i32>();
    let tags: Vec<Vec<i64>> = tags.iter().map(|l| l.unwrap().as_primitive::<Int64Type>().values().to_vec()).collect();
    assert_eq!(tags, [vec![1, 2], vec![], vec![3]]);
}

// ---------------------------------------------------------------------------------------------------------
// Round trips
// ---------------------------------------------------------------------------------------------------------

#[test]
fn jsonl_plain_reads_back_every_row_and_value() {
    let dir = tmp();
    let path = write(dir.path(), "data.jsonl", sample_jsonl());
    let source = Source::open(&path).unwrap();
    assert_eq!(source.format(), Format::Jsonl);
    assert_sample_rows(&raw(&source));
}

#[test]
fn jsonl_gzip_reads_back_the_same_rows() {
    let dir = tmp();
    let path = write(dir.path(), "data.jsonl.gz", gzip(sample_jsonl().as_bytes()));
    let source = Source::open(&path).unwrap();
    assert_eq!(source.format(), Format::Jsonl);
    assert_sample_rows(&raw(&source));
}

#[test]
fn jsonl_zstd_reads_back_the_same_rows() {
    let dir = tmp();
    let path = write(dir.path(), "data.jsonl.zst", zstd(sample_jsonl().as_bytes()));
    let source = Source::open(&path).unwrap();
    assert_eq!(source.format(), Format::Jsonl);
    assert_sample_rows(&raw(&source));
}

#[test]
fn jsonl_blank_lines_and_crlf_are_ignored() {
    let dir = tmp();
    let path = write(dir.path(), "data.jsonl", "{\"text\": \"a\"}\r\n\r\n   \n{\"text\": \"b\"}\r\n");
    let batch = raw(&Source::open(&path).unwrap());
    assert_eq!(texts(&batch, "text"), ["a", "b"]);
}

#[test]
fn jsonl_columns_keep_the_order_of_the_file() {
    let dir = tmp();
    let path = write(
        dir.path(),
        "data.jsonl",
        "{\"zeta\": 1, \"text\": \"a\", \"alpha\": 2}\n{\"mid\": 3, \"text\": \"b\"}\n",
    );
    let source = Source::open(&path).unwrap();
    assert_eq!(names(&raw(&source)), ["zeta", "text", "alpha", "mid"]);
}

#[test]
fn jsonl_column_mixing_numbers_and_strings_in_the_sample_reads_as_text() {
    let dir = tmp();
    let path = write(dir.path(), "data.jsonl", jsonl(&[json!({"text": "a", "v": 1}), json!({"text": "b", "v": "x"})]));
    let batch = raw(&Source::open(&path).unwrap());
    assert_eq!(data_type(&batch, "v"), DataType::Utf8);
    assert_eq!(texts(&batch, "v"), ["1", "x"]);
}

#[test]
fn jsonl_with_byte_order_mark_reads_the_first_line() {
    let dir = tmp();
    let path = write(dir.path(), "data.jsonl", "\u{feff}{\"text\": \"a\"}\n{\"text\": \"b\"}\n");
    let batch = raw(&Source::open(&path).unwrap());
    assert_eq!(texts(&batch, "text"), ["a", "b"]);
}

#[test]
fn csv_handles_header_quoting_and_embedded_newlines() {
    let dir = tmp();
    let path = write(
        dir.path(),
        "data.csv",
        "text,label\n\"hello, world\",a\n\"she said \"\"hi\"\"\",b\n\"two\nlines\",c\nplain,d\n",
    );
    let source = Source::open(&path).unwrap();
    assert_eq!(source.format(), Format::Csv);
    let batch = raw(&source);
    assert_eq!(names(&batch), ["text", "label"]);
    assert_eq!(texts(&batch, "text"), ["hello, world", "she said \"hi\"", "two\nlines", "plain"]);
    assert_eq!(texts(&batch, "label"), ["a", "b", "c", "d"]);
}

#[test]
fn csv_infers_int_float_and_bool_columns_with_empty_as_null() {
    let dir = tmp();
    let path = write(dir.path(), "data.csv", "text,n,x,flag\na,1,1.5,true\nb,,2,\nc,-3,,FALSE\n");
    let batch = raw(&Source::open(&path).unwrap());
    assert_eq!(data_type(&batch, "text"), DataType::Utf8);
    assert_eq!(data_type(&batch, "n"), DataType::Int64);
    assert_eq!(data_type(&batch, "x"), DataType::Float64);
    assert_eq!(data_type(&batch, "flag"), DataType::Boolean);
    assert_eq!(ints(&batch, "n"), [Some(1), None, Some(-3)]);
    assert_eq!(floats(&batch, "x"), [Some(1.5), Some(2.0), None]);
    assert_eq!(bools(&batch, "flag"), [Some(true), None, Some(false)]);
}

#[test]
fn csv_gzip_reads_like_plain() {
    let dir = tmp();
    let path = write(dir.path(), "data.csv.gz", gzip(b"text,n\na,1\nb,2\n"));
    let batch = raw(&Source::open(&path).unwrap());
    assert_eq!(texts(&batch, "text"), ["a", "b"]);
    assert_eq!(ints(&batch, "n"), [Some(1), Some(2)]);
}

#[test]
fn csv_with_byte_order_mark_names_the_first_column_plainly() {
    let dir = tmp();
    let path = write(dir.path(), "data.csv", "\u{feff}text,n\na,1\n");
    let batch = raw(&Source::open(&path).unwrap());
    assert_eq!(names(&batch), ["text", "n"]);
}

#[test]
fn parquet_with_several_row_groups_reads_back_every_row() {
    let dir = tmp();
    let texts_in: Vec<String> = (0..10).map(|i| format!("doc {i}")).collect();
    let data = batch(vec![
        ("text", Arc::new(StringArray::from(texts_in.clone())) as ArrayRef),
        ("id", Arc::new(Int64Array::from_iter_values(0..10))),
    ]);
    let path = write_parquet(dir.path(), "data.parquet", &data, 3);
    let source = Source::open(&path).unwrap();
    assert_eq!(source.format(), Format::Parquet);
    let batches: Vec<RecordBatch> = source.batches().unwrap().map(|b| b.unwrap().batch).collect();
    // Row groups of 3, 3, 3 and 1 rows, read one at a time.
    assert_eq!(batches.iter().map(|b| b.num_rows()).collect::<Vec<_>>(), [3, 3, 3, 1]);
    let all = raw(&source);
    assert_eq!(texts(&all, "text"), texts_in);
    assert_eq!(ints(&all, "id"), (0..10).map(Some).collect::<Vec<_>>());
}

#[test]
fn parquet_nested_list_and_struct_columns_pass_through_unchanged() {
    let dir = tmp();
    let list = ListArray::from_iter_primitive::<Int64Type, _, _>(vec![
        Some(vec![Some(1), Some(2)]),
        None,
        Some(vec![]),
        Some(vec![Some(3), None]),
    ]);
    let inner: StructArray = StructArray::from(vec![
        (
            Arc::new(Field::new("a", DataType::Int64, true)),
            Arc::new(Int64Array::from(vec![Some(10), Some(20), None, Some(40)])) as ArrayRef,
        ),
        (
            Arc::new(Field::new("b", DataType::Utf8, true)),
            Arc::new(StringArray::from(vec![Some("x"), None, Some("z"), Some("w")])) as ArrayRef,
        ),
    ]);
    let data = batch(vec![
        ("text", Arc::new(StringArray::from(vec!["a", "b", "c", "d"])) as ArrayRef),
        ("nums", Arc::new(list.clone())),
        ("meta", Arc::new(inner.clone())),
    ]);
    let path = write_parquet(dir.path(), "nested.parquet", &data, 2);
    let source = Source::open(&path).unwrap();
    let all = raw(&source);
    assert_eq!(all.column_by_name("nums").unwrap().as_ref(), &list as &dyn Array);
    assert_eq!(all.column_by_name("meta").unwrap().as_ref(), &inner as &dyn Array);
    // And as document metadata, after the text.
    let documents = docs(&source);
    assert_eq!(names(&documents), ["text", "nums", "meta"]);
    assert_eq!(documents.column(1).as_ref(), &list as &dyn Array);
}

#[test]
fn text_folder_reads_one_document_per_file_sorted_with_nested_dirs_and_no_hidden_files() {
    let dir = tmp();
    write(dir.path(), "b.txt", "bee");
    write(dir.path(), "a.md", "# A");
    write(dir.path(), "sub/c.txt", "sea\nwith lines");
    write(dir.path(), ".hidden.txt", "hidden");
    write(dir.path(), ".git/x.txt", "hidden too");
    write(dir.path(), "notes.png", [0x89u8, b'P', b'N', b'G']);
    let source = Source::open(dir.path()).unwrap();
    assert_eq!(source.format(), Format::Text);
    let documents = docs(&source);
    assert_eq!(names(&documents), ["text", "path", "bytes"]);
    assert_eq!(texts(&documents, "text"), ["# A", "bee", "sea\nwith lines"]);
    let expected: Vec<String> =
        ["a.md", "b.txt", "sub/c.txt"].iter().map(|f| dir.path().join(f).to_string_lossy().into_owned()).collect();
    assert_eq!(texts(&documents, "path"), expected);
    let sizes: Vec<u64> = documents.column(2).as_primitive::<UInt64Type>().values().to_vec();
    assert_eq!(sizes, [3, 3, 14]);
}

#[test]
fn several_files_form_one_source_read_in_file_order() {
    let dir = tmp();
    let b = write(dir.path(), "b.jsonl", jsonl(&[json!({"text": "b1"}), json!({"text": "b2"})]));
    let a = write(dir.path(), "a.jsonl", jsonl(&[json!({"text": "a1"})]));
    let source = Source::open_many([&b, &a]).unwrap();
    assert_eq!(source.files(), [b, a]);
    assert_eq!(texts(&docs(&source), "text"), ["b1", "b2", "a1"]);
    assert_eq!(source.documents().unwrap().count(), 2);
}

#[test]
fn glob_forms_one_source_of_the_matching_files_sorted() {
    let dir = tmp();
    write(dir.path(), "part-2.jsonl", jsonl(&[json!({"text": "two"})]));
    write(dir.path(), "part-1.jsonl", jsonl(&[json!({"text": "one"})]));
    write(dir.path(), "other.jsonl", jsonl(&[json!({"text": "other"})]));
    let source = Source::open(dir.path().join("part-*.jsonl")).unwrap();
    assert_eq!(source.files().len(), 2);
    assert_eq!(texts(&docs(&source), "text"), ["one", "two"]);
}

#[test]
fn folder_of_jsonl_files_reads_them_all_in_sorted_order() {
    let dir = tmp();
    write(dir.path(), "z/2.jsonl", jsonl(&[json!({"text": "z2"})]));
    write(dir.path(), "1.jsonl", jsonl(&[json!({"text": "one"})]));
    write(dir.path(), "z/1.jsonl.gz", gzip(jsonl(&[json!({"text": "z1"})]).as_bytes()));
    let source = Source::open(dir.path()).unwrap();
    assert_eq!(texts(&docs(&source), "text"), ["one", "z1", "z2"]);
}

#[test]
fn jsonl_column_present_in_one_file_only_is_null_in_the_others() {
    let dir = tmp();
    let a = write(dir.path(), "a.jsonl", jsonl(&[json!({"text": "a", "lang": "en"})]));
    let b = write(dir.path(), "b.jsonl", jsonl(&[json!({"text": "b"}), json!({"text": "c"})]));
    let batch = raw(&Source::open_many([&b, &a]).unwrap());
    assert_eq!(names(&batch), ["text", "lang"]);
    assert_eq!(strings(&batch, "lang"), [None, None, Some("en".into())]);
}

#[test]
fn jsonl_int_in_one_file_and_float_in_another_becomes_float() {
    let dir = tmp();
    let a = write(dir.path(), "a.jsonl", jsonl(&[json!({"text": "a", "v": 1})]));
    let b = write(dir.path(), "b.jsonl", jsonl(&[json!({"text": "b", "v": 2.5})]));
    let batch = raw(&Source::open_many([&a, &b]).unwrap());
    assert_eq!(data_type(&batch, "v"), DataType::Float64);
    assert_eq!(floats(&batch, "v"), [Some(1.0), Some(2.5)]);
}

#[test]
fn csv_int_in_one_file_and_float_in_another_becomes_float() {
    let dir = tmp();
    let a = write(dir.path(), "a.csv", "text,v\na,1\n");
    let b = write(dir.path(), "b.csv", "text,v\nb,2.5\n");
    let batch = raw(&Source::open_many([&a, &b]).unwrap());
    assert_eq!(data_type(&batch, "v"), DataType::Float64);
    assert_eq!(floats(&batch, "v"), [Some(1.0), Some(2.5)]);
}

#[test]
fn parquet_int_in_one_file_and_float_in_another_becomes_float() {
    let dir = tmp();
    let text = |s: &str| Arc::new(StringArray::from(vec![s])) as ArrayRef;
    let a = write_parquet(
        dir.path(),
        "a.parquet",
        &batch(vec![("text", text("a")), ("v", Arc::new(Int64Array::from(vec![1])))]),
        10,
    );
    let b = write_parquet(
        dir.path(),
        "b.parquet",
        &batch(vec![("text", text("b")), ("v", Arc::new(arrow::array::Float64Array::from(vec![2.5])))]),
        10,
    );
    let batch = raw(&Source::open_many([&a, &b]).unwrap());
    assert_eq!(floats(&batch, "v"), [Some(1.0), Some(2.5)]);
}

#[test]
fn int_in_one_file_and_string_in_another_is_a_conflict_naming_both_files() {
    let dir = tmp();
    let a = write(dir.path(), "a.jsonl", jsonl(&[json!({"text": "a", "v": 1})]));
    let b = write(dir.path(), "b.jsonl", jsonl(&[json!({"text": "b", "v": "one"})]));
    let source = Source::open_many([&a, &b]).unwrap();
    let err = source.arrow_schema().unwrap_err();
    assert!(matches!(err, Error::SchemaConflict { .. }), "{err:?}");
    assert_eq!(err.to_string(), format!("column `v` is Int64 in {} but Utf8 in {}", a.display(), b.display()));
}

#[test]
fn csv_column_empty_in_one_file_takes_the_type_of_the_other() {
    let dir = tmp();
    let a = write(dir.path(), "a.csv", "text,n\na,1\n");
    let b = write(dir.path(), "b.csv", "text,n\nb,\n");
    let batch = raw(&Source::open_many([&a, &b]).unwrap());
    assert_eq!(ints(&batch, "n"), [Some(1), None]);
}

// ---------------------------------------------------------------------------------------------------------
// Column mapping
// ---------------------------------------------------------------------------------------------------------

#[test]
fn text_column_takes_the_text_from_another_column() {
    let dir = tmp();
    let path = write(dir.path(), "data.jsonl", lines(&[r#"{"lang": "en", "body": "hello", "id": 7}"#]));
    let documents = docs(&Source::open(&path).unwrap().text_column("body"));
    assert_eq!(names(&documents), ["text", "lang", "id"]);
    assert_eq!(texts(&documents, "text"), ["hello"]);
    assert_eq!(ints(&documents, "id"), [Some(7)]);
}

#[test]
fn a_source_column_named_text_is_kept_as_original_text() {
    let dir = tmp();
    let path = write(dir.path(), "data.jsonl", lines(&[r#"{"text": "raw", "body": "clean"}"#]));
    let documents = docs(&Source::open(&path).unwrap().text_column("body"));
    assert_eq!(names(&documents), ["text", "original_text"]);
    assert_eq!(texts(&documents, "text"), ["clean"]);
    assert_eq!(texts(&documents, "original_text"), ["raw"]);
}

#[test]
fn template_joins_instruction_and_output_with_brace_escapes() {
    let dir = tmp();
    let path = write(
        dir.path(),
        "data.jsonl",
        lines(&[
            r#"{"instruction": "Add", "output": "4", "n": 2}"#,
            r#"{"instruction": "Sub", "output": null, "n": 3}"#,
        ]),
    );
    let source = Source::open(&path).unwrap().text_template("Q: {instruction} {{n={n}}}\n\nA: { output }");
    let documents = docs(&source);
    assert_eq!(texts(&documents, "text"), ["Q: Add {n=2}\n\nA: 4", "Q: Sub {n=3}\n\nA: "]);
    // Template fields stay as metadata.
    assert_eq!(names(&documents), ["text", "instruction", "output", "n"]);
}

#[test]
fn template_field_missing_lists_the_available_columns() {
    let dir = tmp();
    let path = write(dir.path(), "data.jsonl", jsonl(&[json!({"instruction": "a", "output": "b"})]));
    let err = read_error(&Source::open(&path).unwrap().text_template("{instruction}\n{response}"));
    assert!(matches!(err, Error::MissingColumn { .. }), "{err:?}");
    assert_eq!(
        err.to_string(),
        format!("{}: no column `response`; the columns are: instruction, output", path.display())
    );
}

#[test]
fn template_with_unclosed_brace_is_an_invalid_argument() {
    let dir = tmp();
    let path = write(dir.path(), "data.jsonl", jsonl(&[json!({"a": "x"})]));
    let err = read_error(&Source::open(&path).unwrap().text_template("{a} {oops"));
    assert!(matches!(err, Error::InvalidArgument(_)), "{err:?}");
    assert!(err.to_string().contains("is never closed"), "{err}");
}

#[test]
fn metadata_columns_follow_the_text_in_their_original_order() {
    let dir = tmp();
    let path = write(dir.path(), "data.csv", "zeta,text,alpha,mid\n1,hello,x,2.5\n");
    let documents = docs(&Source::open(&path).unwrap());
    assert_eq!(names(&documents), ["text", "zeta", "alpha", "mid"]);
    assert_eq!(ints(&documents, "zeta"), [Some(1)]);
    assert_eq!(texts(&documents, "alpha"), ["x"]);
    assert_eq!(floats(&documents, "mid"), [Some(2.5)]);
}

#[test]
fn non_text_column_chosen_as_text_is_a_clear_error() {
    let dir = tmp();
    let path = write(dir.path(), "data.jsonl", jsonl(&[json!({"text": "a", "id": 1})]));
    let err = read_error(&Source::open(&path).unwrap().text_column("id"));
    assert_eq!(
        err.to_string(),
        format!(
            "{}: column `id` holds Int64, not text; choose a text column or build the text with a template",
            path.display()
        )
    );
}

// ---------------------------------------------------------------------------------------------------------
// Errors name the file and the line or row
// ---------------------------------------------------------------------------------------------------------

#[test]
fn malformed_json_names_the_file_and_line_12345() {
    let dir = tmp();
    let mut data = String::new();
    for i in 1..12_345 {
        data.push_str(&format!("{{\"text\": \"doc {i}\"}}\n"));
    }
    data.push_str("{\"text\": \"broken\"\n");
    data.push_str("{\"text\": \"after\"}\n");
    let path = write(dir.path(), "big.jsonl", data);
    let err = read_error(&Source::open(&path).unwrap());
    assert!(matches!(err, Error::Json { line: 12_345, .. }), "{err:?}");
    let message = err.to_string();
    let prefix = format!("{}: line 12,345: malformed JSON: EOF while parsing an object", path.display());
    assert!(message.starts_with(&prefix), "{message}");
}

#[test]
fn malformed_json_in_a_gzip_file_names_the_line() {
    let dir = tmp();
    let path = write(dir.path(), "data.jsonl.gz", gzip(b"{\"text\": \"a\"}\n{\"text\": }\n"));
    let err = read_error(&Source::open(&path).unwrap());
    assert!(err.to_string().starts_with(&format!("{}: line 2: malformed JSON:", path.display())), "{err}");
}

#[test]
fn non_object_json_line_names_the_line() {
    let dir = tmp();
    let path = write(dir.path(), "data.jsonl", "{\"text\": \"a\"}\n[1, 2, 3]\n");
    let err = read_error(&Source::open(&path).unwrap());
    assert_eq!(
        err.to_string(),
        format!("{}: line 2: malformed JSON: expected a JSON object (`{{...}}`), found `[1, 2, 3]`", path.display())
    );
}

#[test]
fn csv_row_with_wrong_field_count_names_line_expected_and_found() {
    let dir = tmp();
    let path = write(dir.path(), "data.csv", "a,b,text\n1,2,x\n\"multi\nline\",3,y\n4,z\n");
    let err = read_error(&Source::open(&path).unwrap());
    assert!(matches!(err, Error::CsvFieldCount { line: 5, expected: 3, found: 2, .. }), "{err:?}");
    assert_eq!(
        err.to_string(),
        format!("{}: line 5: CSV record 3 has 2 fields, expected 3 (as in the header)", path.display())
    );
}

#[test]
fn jsonl_invalid_utf8_names_line_and_byte_offset() {
    let dir = tmp();
    let path = write(dir.path(), "data.jsonl", b"{\"text\":\"ok\"}\n{\"text\":\"a\xffb\"}\n");
    let err = read_error(&Source::open(&path).unwrap());
    assert_eq!(
        err.to_string(),
        format!("{}: line 2: invalid UTF-8 at byte offset 24 (byte 0xff); text must be UTF-8", path.display())
    );
}

#[test]
fn csv_invalid_utf8_names_line_and_byte_offset() {
    let dir = tmp();
    let path = write(dir.path(), "data.csv", b"id,text\n1,a\xffb\n");
    let err = read_error(&Source::open(&path).unwrap());
    assert_eq!(
        err.to_string(),
        format!("{}: line 2: invalid UTF-8 at byte offset 11 (byte 0xff); text must be UTF-8", path.display())
    );
}

#[test]
fn txt_invalid_utf8_names_the_file_and_byte_offset() {
    let dir = tmp();
    write(dir.path(), "a.txt", "fine");
    let bad = write(dir.path(), "b.txt", b"hello\xfe");
    let err = read_error(&Source::open(dir.path()).unwrap());
    assert_eq!(
        err.to_string(),
        format!("{}: the file: invalid UTF-8 at byte offset 5 (byte 0xfe); text must be UTF-8", bad.display())
    );
}

#[test]
fn empty_jsonl_file_is_an_error_naming_it() {
    let dir = tmp();
    let path = write(dir.path(), "empty.jsonl", "");
    let err = read_error(&Source::open(&path).unwrap());
    assert!(matches!(err, Error::EmptyFile { .. }), "{err:?}");
    assert_eq!(
        err.to_string(),
        format!("{}: the file is empty (expected at least one JSON object per line)", path.display())
    );
}

#[test]
fn empty_csv_file_is_an_error_naming_it() {
    let dir = tmp();
    let path = write(dir.path(), "empty.csv", "");
    let err = read_error(&Source::open(&path).unwrap());
    assert_eq!(err.to_string(), format!("{}: the file is empty (expected at least one header line)", path.display()));
}

#[test]
fn csv_file_with_only_a_header_is_an_error_naming_it() {
    let dir = tmp();
    let path = write(dir.path(), "header.csv", "text,id\n");
    let err = read_error(&Source::open(&path).unwrap());
    assert!(matches!(err, Error::EmptyFile { .. }), "{err:?}");
    assert_eq!(
        err.to_string(),
        format!("{}: the file is empty (expected at least one record after the header)", path.display())
    );
}

#[test]
fn empty_parquet_file_is_an_error_naming_it() {
    let dir = tmp();
    let path = write(dir.path(), "empty.parquet", "");
    let err = read_error(&Source::open(&path).unwrap());
    assert!(matches!(err, Error::EmptyFile { .. }), "{err:?}");
    assert_eq!(err.to_string(), format!("{}: the file is empty (expected at least one row)", path.display()));
}

#[test]
fn parquet_file_with_no_rows_is_an_error_naming_it() {
    let dir = tmp();
    let data = batch(vec![("text", Arc::new(StringArray::from(Vec::<String>::new())) as ArrayRef)]);
    let path = write_parquet(dir.path(), "norows.parquet", &data, 10);
    let err = read_error(&Source::open(&path).unwrap());
    assert_eq!(err.to_string(), format!("{}: the file is empty (expected at least one row)", path.display()));
}

#[test]
fn empty_txt_file_is_an_error_naming_it() {
    let dir = tmp();
    write(dir.path(), "a.txt", "fine");
    let empty = write(dir.path(), "b.txt", "");
    let err = read_error(&Source::open(dir.path()).unwrap());
    assert!(matches!(err, Error::EmptyFile { .. }), "{err:?}");
    assert!(err.to_string().starts_with(&format!("{}: the file is empty", empty.display())), "{err}");
}

fn small_parquet_bytes() -> Vec<u8> {
    let dir = tmp();
    let data = batch(vec![("text", Arc::new(StringArray::from(vec!["a"; 100])) as ArrayRef)]);
    std::fs::read(write_parquet(dir.path(), "x.parquet", &data, 10)).unwrap()
}

#[test]
fn truncated_parquet_file_says_it_is_truncated() {
    let dir = tmp();
    let bytes = small_parquet_bytes();
    let path = write(dir.path(), "cut.parquet", &bytes[..bytes.len() / 2]);
    let err = read_error(&Source::open(&path).unwrap());
    assert!(matches!(err, Error::NotParquet { .. }), "{err:?}");
    assert_eq!(
        err.to_string(),
        format!(
            "{}: not a readable Parquet file: it does not end with the `PAR1` magic bytes: truncated, or still being \
             written",
            path.display()
        )
    );
}

#[test]
fn non_parquet_file_named_parquet_says_it_is_not_parquet() {
    let dir = tmp();
    let path = write(dir.path(), "fake.parquet", sample_jsonl());
    let err = read_error(&Source::open(&path).unwrap());
    assert_eq!(
        err.to_string(),
        format!("{}: not a readable Parquet file: it does not start with the `PAR1` magic bytes", path.display())
    );
}

#[test]
fn missing_text_column_lists_the_existing_columns() {
    let dir = tmp();
    let path = write(dir.path(), "data.csv", "body,id\nhello,1\n");
    let err = read_error(&Source::open(&path).unwrap());
    assert!(matches!(err, Error::MissingColumn { .. }), "{err:?}");
    assert_eq!(err.to_string(), format!("{}: no column `text`; the columns are: body, id", path.display()));
}

#[test]
fn null_text_value_names_the_line() {
    let dir = tmp();
    let path = write(dir.path(), "data.jsonl", "{\"text\": \"a\"}\n\n{\"text\": null}\n");
    let err = read_error(&Source::open(&path).unwrap());
    assert!(matches!(err, Error::NotText { .. }), "{err:?}");
    assert_eq!(
        err.to_string(),
        format!("{}: line 3: column `text`: expected text (a string), found null (or a missing field)", path.display())
    );
}

#[test]
fn null_text_in_parquet_names_the_row() {
    let dir = tmp();
    let data = batch(vec![("text", Arc::new(StringArray::from(vec![Some("a"), Some("b"), None])) as ArrayRef)]);
    let path = write_parquet(dir.path(), "data.parquet", &data, 2);
    let err = read_error(&Source::open(&path).unwrap());
    assert!(err.to_string().starts_with(&format!("{}: row 3: column `text`", path.display())), "{err}");
}

/// 1,000 well-typed lines (the inference sample), then `bad` on line 1,001.
fn jsonl_with_late_line(bad: &str) -> String {
    let mut data = jsonl(&(0..1000).map(|i| json!({"text": "t", "n": i})).collect::<Vec<_>>());
    data.push_str(bad);
    data.push('\n');
    data
}

#[test]
fn jsonl_later_string_in_an_int_column_names_the_line() {
    let dir = tmp();
    let path = write(dir.path(), "data.jsonl", jsonl_with_late_line(r#"{"text": "t", "n": "many"}"#));
    let err = read_error(&Source::open(&path).unwrap());
    assert!(matches!(err, Error::SchemaMismatch { line: 1001, .. }), "{err:?}");
    assert!(err.to_string().starts_with(&format!("{}: line 1,001: ", path.display())), "{err}");
}

#[test]
fn jsonl_later_float_in_an_int_column_is_an_error_not_a_truncation() {
    let dir = tmp();
    let path = write(dir.path(), "data.jsonl", jsonl_with_late_line(r#"{"text": "t", "n": 2.5}"#));
    let err = read_error(&Source::open(&path).unwrap());
    let message = err.to_string();
    assert!(message.starts_with(&format!("{}: line 1,001: ", path.display())), "{message}");
    assert!(message.contains("`n`"), "{message}");
}

#[test]
fn jsonl_later_unknown_field_names_the_line() {
    let dir = tmp();
    let path = write(dir.path(), "data.jsonl", jsonl_with_late_line(r#"{"text": "t", "n": 1, "extra": true}"#));
    let err = read_error(&Source::open(&path).unwrap());
    assert!(err.to_string().starts_with(&format!("{}: line 1,001: ", path.display())), "{err}");
}

#[test]
fn csv_later_value_of_the_wrong_type_names_line_and_column() {
    let dir = tmp();
    let mut data = String::from("text,n\n");
    for i in 0..1000 {
        data.push_str(&format!("t,{i}\n"));
    }
    data.push_str("t,lots\n");
    let path = write(dir.path(), "data.csv", data);
    let err = read_error(&Source::open(&path).unwrap());
    assert!(matches!(err, Error::BadValue { .. }), "{err:?}");
    assert_eq!(
        err.to_string(),
        format!(
            "{}: line 1,002: column `n`: expected an integer (the type inferred from the first 1,000 records), found \
             \"lots\"",
            path.display()
        )
    );
}

#[test]
fn glob_matching_nothing_is_an_error() {
    let dir = tmp();
    let pattern = dir.path().join("*.jsonl");
    let err = open_error(Source::open(&pattern));
    assert_eq!(err.to_string(), format!("`{}` matched no files", pattern.display()));
}

#[test]
fn path_that_does_not_exist_is_an_error_naming_it() {
    let dir = tmp();
    let path = dir.path().join("nope.jsonl");
    let err = open_error(Source::open(&path));
    assert!(matches!(&err, Error::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound), "{err:?}");
    assert!(err.to_string().starts_with(&format!("{}: ", path.display())), "{err}");
}

#[test]
fn files_of_two_formats_in_one_source_are_an_error() {
    let dir = tmp();
    let a = write(dir.path(), "a.jsonl", jsonl(&[json!({"text": "a"})]));
    let b = write(dir.path(), "b.csv", "text\nb\n");
    let err = open_error(Source::open_many([a, b]));
    assert!(err.to_string().contains("these are jsonl and csv"), "{err}");
}

#[test]
fn unknown_extension_asks_for_with_format() {
    let dir = tmp();
    let path = write(dir.path(), "data.log", jsonl(&[json!({"text": "a"})]));
    let err = open_error(Source::open(&path));
    assert!(err.to_string().contains(".with_format(...)"), "{err}");
}

#[test]
fn with_format_reads_a_file_whatever_its_name() {
    let dir = tmp();
    let path = write(dir.path(), "data.txt", jsonl(&[json!({"text": "a"}), json!({"text": "b"})]));
    let as_text = Source::open(&path).unwrap();
    assert_eq!(as_text.format(), Format::Text);
    let source = as_text.with_format(Format::Jsonl).unwrap();
    assert_eq!(source.format(), Format::Jsonl);
    assert_eq!(texts(&docs(&source), "text"), ["a", "b"]);
}

#[test]
fn spec_with_a_format_reads_a_file_of_unknown_extension() {
    let dir = tmp();
    let path = write(dir.path(), "data.log", jsonl(&[json!({"text": "a"}), json!({"text": "b"})]));
    let spec = SourceSpec {
        paths: vec![path.to_string_lossy().into_owned()],
        format: Some(Format::Jsonl),
        text: TextField::default(),
        on_error: OnError::Fail,
        infer_rows: 10,
        batch_rows: 10,
    };
    let source = Source::from_spec(spec).unwrap();
    assert_eq!(texts(&docs(&source), "text"), ["a", "b"]);
}

#[test]
fn corrupt_gzip_is_an_error_naming_the_file() {
    let dir = tmp();
    let mut bytes = gzip(jsonl(&(0..2000).map(|i| json!({"text": format!("row {i}")})).collect::<Vec<_>>()).as_bytes());
    bytes.truncate(bytes.len() / 2);
    let path = write(dir.path(), "cut.jsonl.gz", bytes);
    let err = read_error(&Source::open(&path).unwrap());
    assert!(err.to_string().starts_with(&format!("{}: cannot read (corrupt or truncated", path.display())), "{err}");
}

// ---------------------------------------------------------------------------------------------------------
// Skipping bad records
// ---------------------------------------------------------------------------------------------------------

#[test]
fn skip_drops_bad_jsonl_records_counts_them_and_keeps_every_good_one() {
    let dir = tmp();
    let mut data = String::new();
    for i in 0..30 {
        match i % 10 {
            3 => data.push_str("{\"text\": oops}\n"),
            6 => data.push_str("[\"not an object\"]\n"),
            8 => data.push_str("{\"text\": null}\n"),
            _ => data.push_str(&format!("{{\"text\": \"doc {i}\"}}\n")),
        }
    }
    let path = write(dir.path(), "data.jsonl", data);
    let mut documents = Source::open(&path).unwrap().skip_bad_records().batch_rows(7).documents().unwrap();
    let mut got = Vec::new();
    for batch in documents.by_ref() {
        got.extend(texts(&batch.unwrap(), "text"));
    }
    let expected: Vec<String> =
        (0..30).filter(|i| ![3, 6, 8].contains(&(i % 10))).map(|i| format!("doc {i}")).collect();
    assert_eq!(got, expected);
    let report = documents.report();
    assert_eq!(report.skipped, 9);
    assert_eq!(report.errors.len(), 9);
    assert!(
        report.errors[0].starts_with(&format!("{}: line 4: malformed JSON", path.display())),
        "{:?}",
        report.errors
    );
    assert!(report.errors.iter().any(|e| e.contains("line 9: column `text`")), "{:?}", report.errors);
}

#[test]
fn skip_drops_bad_csv_rows_and_keeps_the_good_ones() {
    let dir = tmp();
    let path = write(dir.path(), "data.csv", "text,n\na,1\nb,2,extra\nc,3\nd,notanumber\ne,\n");
    let source = Source::open(&path).unwrap().infer_rows(2).skip_bad_records();
    let mut documents = source.documents().unwrap();
    let batch = documents.next().unwrap().unwrap();
    assert!(documents.next().is_none());
    assert_eq!(texts(&batch, "text"), ["a", "c", "e"]);
    assert_eq!(ints(&batch, "n"), [Some(1), Some(3), None]);
    let report = documents.report();
    assert_eq!(report.skipped, 2);
    assert!(report.errors[0].contains("line 3: CSV record 2 has 3 fields, expected 2"), "{:?}", report.errors);
    assert!(report.errors[1].contains("line 5: column `n`"), "{:?}", report.errors);
}

#[test]
fn skip_drops_jsonl_records_that_do_not_fit_the_inferred_types() {
    let dir = tmp();
    let data = lines(&[
        r#"{"text": "a", "n": 1}"#,
        r#"{"text": "b", "n": 2.5}"#,
        r#"{"text": "c", "n": "three"}"#,
        r#"{"text": "d", "n": 4.0}"#,
        r#"{"text": "e", "n": 5, "new": 1}"#,
        r#"{"text": 6, "n": 6}"#,
    ]);
    let path = write(dir.path(), "data.jsonl", data);
    let mut documents = Source::open(&path).unwrap().infer_rows(1).skip_bad_records().documents().unwrap();
    let batch = documents.next().unwrap().unwrap();
    assert!(documents.next().is_none());
    // A whole float fits an integer column; a number in a text column reads as its text.
    assert_eq!(texts(&batch, "text"), ["a", "d", "6"]);
    assert_eq!(ints(&batch, "n"), [Some(1), Some(4), Some(6)]);
    let report = documents.report();
    assert_eq!(report.skipped, 3);
    assert!(report.errors[0].contains("line 2: ") && report.errors[0].contains("found 2.5"), "{:?}", report.errors);
    assert!(report.errors[1].contains("line 3: "), "{:?}", report.errors);
    assert!(report.errors[2].contains("line 5: "), "{:?}", report.errors);
}

#[test]
fn skip_keeps_at_most_twenty_error_messages_but_counts_all() {
    let dir = tmp();
    let mut data = String::new();
    for i in 0..100 {
        data.push_str(if i % 2 == 0 { "{\"text\": \"ok\"}\n" } else { "not json\n" });
    }
    let path = write(dir.path(), "data.jsonl", data);
    let mut documents = Source::open(&path).unwrap().skip_bad_records().documents().unwrap();
    let rows: usize = documents.by_ref().map(|b| b.unwrap().num_rows()).sum();
    assert_eq!(rows, 50);
    let report = documents.report();
    assert_eq!(report.skipped, 50);
    assert_eq!(report.errors.len(), 20);
    assert_eq!(report.records, 50);
}

/// A good file, then `bad_name` holding `bad`, then another good file.
fn source_with_bad_middle_file(dir: &Path, ext: &str, good: &[u8], bad_name: &str, bad: &[u8]) -> (Source, PathBuf) {
    let a = write(dir, &format!("a.{ext}"), good);
    let b = write(dir, bad_name, bad);
    let c = write(dir, &format!("c.{ext}"), good);
    (Source::open_many([a, b.clone(), c]).unwrap(), b)
}

fn assert_skipped_one_file(source: &Source, bad: &Path, rows: usize) {
    let mut documents = source.skip_bad_records().documents().unwrap();
    let got: usize = documents.by_ref().map(|b| b.unwrap().num_rows()).sum();
    assert_eq!(got, rows);
    let report = documents.report();
    assert_eq!(report.skipped, 1, "{:?}", report.errors);
    assert!(report.errors[0].starts_with(&bad.display().to_string()), "{:?}", report.errors);
}

#[test]
fn empty_jsonl_file_among_several_is_skipped_under_skip_and_fails_under_fail() {
    let dir = tmp();
    let good = jsonl(&[json!({"text": "x"}), json!({"text": "y"})]);
    let (source, bad) = source_with_bad_middle_file(dir.path(), "jsonl", good.as_bytes(), "b.jsonl", b"");
    assert!(matches!(read_error(&source), Error::EmptyFile { ref path, .. } if *path == bad));
    assert_skipped_one_file(&source, &bad, 4);
}

#[test]
fn header_only_csv_file_among_several_is_skipped_under_skip_and_fails_under_fail() {
    let dir = tmp();
    let (source, bad) = source_with_bad_middle_file(dir.path(), "csv", b"text,n\nx,1\ny,2\n", "b.csv", b"text,n\n");
    assert!(
        matches!(read_error(&source), Error::EmptyFile { ref path, .. } if *path == bad),
        "{:?}",
        read_error(&source)
    );
    assert_skipped_one_file(&source, &bad, 4);
}

#[test]
fn empty_csv_file_among_several_is_skipped_under_skip_and_fails_under_fail() {
    let dir = tmp();
    let (source, bad) = source_with_bad_middle_file(dir.path(), "csv", b"text,n\nx,1\ny,2\n", "b.csv", b"");
    assert!(matches!(read_error(&source), Error::EmptyFile { ref path, .. } if *path == bad));
    assert_skipped_one_file(&source, &bad, 4);
}

#[test]
fn corrupt_parquet_file_among_several_is_skipped_under_skip_and_fails_under_fail() {
    let dir = tmp();
    let good = small_parquet_bytes();
    let (source, bad) =
        source_with_bad_middle_file(dir.path(), "parquet", &good, "b.parquet", &good[..good.len() - 10]);
    assert!(matches!(read_error(&source), Error::NotParquet { ref path, .. } if *path == bad));
    assert_skipped_one_file(&source, &bad, 200);
}

#[test]
fn truncated_gzip_file_among_several_is_skipped_under_skip_and_fails_under_fail() {
    let dir = tmp();
    let good = gzip(jsonl(&[json!({"text": "x"}), json!({"text": "y"})]).as_bytes());
    let big = jsonl(&(0..5000).map(|i| json!({"text": format!("row {i}")})).collect::<Vec<_>>());
    let mut cut = gzip(big.as_bytes());
    cut.truncate(cut.len() * 2 / 3);
    let a = write(dir.path(), "a.jsonl.gz", &good);
    let b = write(dir.path(), "b.jsonl.gz", &cut);
    let c = write(dir.path(), "c.jsonl.gz", &good);
    let source = Source::open_many([a, b.clone(), c]).unwrap().batch_rows(100_000);
    assert!(read_error(&source).to_string().starts_with(&b.display().to_string()));
    // Under Skip the batch that hit the cut is dropped with the rest of the file; the good files come through.
    let mut documents = source.skip_bad_records().documents().unwrap();
    let got: Vec<String> = documents.by_ref().flat_map(|b| texts(&b.unwrap(), "text")).collect();
    assert_eq!(got, ["x", "y", "x", "y"]);
    let report = documents.report();
    assert_eq!(report.skipped, 1);
    assert!(report.errors[0].contains("cannot read (corrupt or truncated Gzip stream?)"), "{:?}", report.errors);
}

#[test]
fn empty_txt_file_is_skipped_under_skip() {
    let dir = tmp();
    write(dir.path(), "a.txt", "one");
    let empty = write(dir.path(), "b.txt", "");
    write(dir.path(), "c.txt", "three");
    let source = Source::open(dir.path()).unwrap();
    assert_skipped_one_file(&source, &empty, 2);
}

// ---------------------------------------------------------------------------------------------------------
// Streaming in bounded batches
// ---------------------------------------------------------------------------------------------------------

fn numbered_jsonl(rows: usize) -> String {
    (0..rows).map(|i| format!("{{\"text\": \"document number {i}\", \"i\": {i}}}\n")).collect()
}

#[test]
fn jsonl_batches_come_in_batch_rows_pieces() {
    let dir = tmp();
    let path = write(dir.path(), "data.jsonl", numbered_jsonl(10_000));
    let sizes: Vec<usize> =
        Source::open(&path).unwrap().batch_rows(1000).batches().unwrap().map(|b| b.unwrap().batch.num_rows()).collect();
    assert_eq!(sizes, vec![1000; 10]);
}

#[test]
fn document_batches_come_in_batch_rows_pieces_with_a_short_last_one() {
    let dir = tmp();
    let path = write(dir.path(), "data.jsonl", numbered_jsonl(2_500));
    let documents = Source::open(&path).unwrap().batch_rows(1000).documents().unwrap();
    let sizes: Vec<usize> = documents.map(|b| b.unwrap().num_rows()).collect();
    assert_eq!(sizes, [1000, 1000, 500]);
}

#[test]
fn csv_batches_come_in_batch_rows_pieces() {
    let dir = tmp();
    let data: String =
        std::iter::once("text,i\n".to_string()).chain((0..2500).map(|i| format!("t{i},{i}\n"))).collect();
    let path = write(dir.path(), "data.csv", data);
    let sizes: Vec<usize> =
        Source::open(&path).unwrap().batch_rows(1000).batches().unwrap().map(|b| b.unwrap().batch.num_rows()).collect();
    assert_eq!(sizes, [1000, 1000, 500]);
}

#[test]
fn text_folder_batches_come_in_batch_rows_pieces() {
    let dir = tmp();
    for i in 0..5 {
        write(dir.path(), &format!("{i}.txt"), format!("doc {i}"));
    }
    let sizes: Vec<usize> =
        Source::open(dir.path()).unwrap().batch_rows(2).documents().unwrap().map(|b| b.unwrap().num_rows()).collect();
    assert_eq!(sizes, [2, 2, 1]);
}

#[test]
fn bytes_read_reaches_bytes_total_for_a_plain_jsonl() {
    let dir = tmp();
    let path = write(dir.path(), "data.jsonl", numbered_jsonl(10_000));
    let size = std::fs::metadata(&path).unwrap().len();
    let mut documents = Source::open(&path).unwrap().batch_rows(1000).documents().unwrap();
    assert_eq!(documents.report().bytes_total, size);
    let first = documents.next().unwrap().unwrap();
    assert_eq!(first.num_rows(), 1000);
    let rows = 1000 + documents.by_ref().map(|b| b.unwrap().num_rows()).sum::<usize>();
    let report = documents.report();
    assert_eq!(rows, 10_000);
    assert_eq!(report.records, 10_000);
    assert_eq!(report.files, 1);
    assert_eq!(report.bytes_read, size);
    assert_eq!(report.bytes_total, size);
}

#[test]
fn head_returns_the_first_n_documents() {
    let dir = tmp();
    let path = write(dir.path(), "data.jsonl", numbered_jsonl(100));
    let head = Source::open(&path).unwrap().head(5).unwrap();
    assert_eq!(head.num_rows(), 5);
    assert_eq!(ints(&head, "i"), (0..5).map(Some).collect::<Vec<_>>());
    assert_eq!(Source::open(&path).unwrap().head(1000).unwrap().num_rows(), 100);
}

// ---------------------------------------------------------------------------------------------------------
// Schema views
// ---------------------------------------------------------------------------------------------------------

#[test]
fn schema_view_shows_names_types_null_counts_and_the_text_column() {
    let dir = tmp();
    let path = write(
        dir.path(),
        "data.jsonl",
        lines(&[
            r#"{"text": "a", "id": 1, "score": 0.5, "lang": "en"}"#,
            r#"{"text": "b", "id": 2, "score": null}"#,
            r#"{"text": "c", "id": null, "score": null, "lang": "fr"}"#,
        ]),
    );
    let view = Source::open(&path).unwrap().schema().unwrap();
    assert_eq!(view.names(), ["text", "id", "score", "lang"]);
    let types: Vec<&str> = view.columns.iter().map(|c| c.data_type.as_str()).collect();
    assert_eq!(types, ["Utf8", "Int64", "Float64", "Utf8"]);
    let nulls: Vec<u64> = view.columns.iter().map(|c| c.nulls).collect();
    assert_eq!(nulls, [0, 1, 2, 1]);
    let is_text: Vec<bool> = view.columns.iter().map(|c| c.is_text).collect();
    assert_eq!(is_text, [true, false, false, false]);
    assert_eq!(view.sample_rows, 3);
    assert_eq!(view.files, 1);
    assert_eq!(view.format, "jsonl");
}

#[test]
fn schema_view_marks_template_fields_as_text() {
    let dir = tmp();
    let path = write(dir.path(), "data.csv", "instruction,output,id\na,b,1\n");
    let view = Source::open(&path).unwrap().text_template("{instruction} {output}").schema().unwrap();
    let is_text: Vec<bool> = view.columns.iter().map(|c| c.is_text).collect();
    assert_eq!(is_text, [true, true, false]);
    assert_eq!(view.format, "csv");
}

#[test]
fn schema_view_samples_at_most_infer_rows_rows() {
    let dir = tmp();
    let mut rows: Vec<Value> = (0..3).map(|i| json!({"text": "t", "n": i})).collect();
    rows.extend((0..7).map(|_| json!({"text": "t", "n": null})));
    let path = write(dir.path(), "data.jsonl", jsonl(&rows));
    let view = Source::open(&path).unwrap().infer_rows(3).schema().unwrap();
    assert_eq!(view.sample_rows, 3);
    assert_eq!(view.columns[1].nulls, 0);
}

#[test]
fn schema_view_of_parquet_shows_nested_types() {
    let dir = tmp();
    let list = ListArray::from_iter_primitive::<Int64Type, _, _>(vec![Some(vec![Some(1)]), None]);
    let data = batch(vec![("text", Arc::new(StringArray::from(vec!["a", "b"])) as ArrayRef), ("nums", Arc::new(list))]);
    let path = write_parquet(dir.path(), "data.parquet", &data, 10);
    let view = Source::open(&path).unwrap().schema().unwrap();
    assert_eq!(view.names(), ["text", "nums"]);
    assert!(view.columns[1].data_type.starts_with("List("), "{}", view.columns[1].data_type);
    assert_eq!(view.columns[1].nulls, 1);
}

// ---------------------------------------------------------------------------------------------------------
// Specs
// ---------------------------------------------------------------------------------------------------------

#[test]
fn from_spec_reopens_the_same_files_and_reads_the_same_rows() {
    let dir = tmp();
    write(dir.path(), "a.jsonl", jsonl(&[json!({"body": "one", "n": 1})]));
    write(dir.path(), "b.jsonl", jsonl(&[json!({"body": "two", "n": 2})]));
    let source = Source::open(dir.path().join("*.jsonl")).unwrap().text_column("body").batch_rows(1).skip_bad_records();
    let again = Source::from_spec(source.spec().clone()).unwrap();
    assert_eq!(again.files(), source.files());
    assert_eq!(again.format(), Format::Jsonl);
    assert_eq!(again.spec(), source.spec());
    assert_eq!(docs(&again), docs(&source));
    assert_eq!(texts(&docs(&again), "text"), ["one", "two"]);
}

#[test]
fn spec_round_trips_through_serde_json() {
    let dir = tmp();
    let path = write(dir.path(), "data.csv", "instruction,output\na,b\n");
    let source = Source::open(&path).unwrap().text_template("{instruction}\n{output}").batch_rows(17).infer_rows(5);
    let stored = serde_json::to_string(source.spec()).unwrap();
    let spec: SourceSpec = serde_json::from_str(&stored).unwrap();
    assert_eq!(&spec, source.spec());
    assert_eq!(spec.text, TextField::Template("{instruction}\n{output}".into()));
    assert_eq!((spec.batch_rows, spec.infer_rows), (17, 5));
    assert_eq!(spec.paths, [path.to_string_lossy().into_owned()]);
    let reopened = Source::from_spec(spec).unwrap();
    assert_eq!(texts(&docs(&reopened), "text"), ["a\nb"]);
}

#[test]
fn spec_with_only_paths_takes_the_defaults() {
    let spec: SourceSpec = serde_json::from_str(r#"{"paths": ["/x.jsonl"]}"#).unwrap();
    assert_eq!(spec.format, None);
    assert_eq!(spec.text, TextField::Column("text".into()));
    assert_eq!(spec.on_error, OnError::Fail);
    assert_eq!((spec.infer_rows, spec.batch_rows), (1000, 4096));
}

#[test]
fn zero_batch_rows_in_a_spec_is_an_invalid_argument() {
    let spec: SourceSpec = serde_json::from_str(r#"{"paths": ["/x.jsonl"], "batch_rows": 0}"#).unwrap();
    assert!(matches!(open_error(Source::from_spec(spec)), Error::InvalidArgument(_)));
}

// ---------------------------------------------------------------------------------------------------------
// A large file (run by hand: SAEKIT_LARGE_JSONL_MB=200 cargo test --test sources -- --ignored --nocapture)
// ---------------------------------------------------------------------------------------------------------

#[test]
#[ignore]
fn read_large_jsonl() {
    let megabytes: u64 = std::env::var("SAEKIT_LARGE_JSONL_MB").ok().and_then(|v| v.parse().ok()).unwrap_or(1024);
    let dir = tmp();
    let path = dir.path().join("large.jsonl");

    // A block of varied lines, written again and again.
    let mut block = String::new();
    let mut block_rows = 0u64;
    while block.len() < (1 << 20) {
        let n = block_rows;
        let text = "The quick brown fox jumps over the lazy dog. ".repeat(1 + (n % 20) as usize);
        block.push_str(&format!("{{\"text\": \"{text}\", \"id\": {n}, \"score\": {}.5, \"src\": \"web\"}}\n", n % 7));
        block_rows += 1;
    }
    let blocks = (megabytes << 20).div_ceil(block.len() as u64);
    let start = std::time::Instant::now();
    {
        let mut file = std::io::BufWriter::new(std::fs::File::create(&path).unwrap());
        for _ in 0..blocks {
            file.write_all(block.as_bytes()).unwrap();
        }
        file.flush().unwrap();
    }
    let size = std::fs::metadata(&path).unwrap().len();
    println!("wrote {} MB in {:.1?}", size >> 20, start.elapsed());

    let start = std::time::Instant::now();
    let mut documents = Source::open(&path).unwrap().documents().unwrap();
    let (mut rows, mut text_bytes) = (0u64, 0u64);
    for batch in documents.by_ref() {
        let batch = batch.unwrap();
        rows += batch.num_rows() as u64;
        text_bytes += batch.column(0).as_string::<i32>().values().len() as u64;
    }
    let elapsed = start.elapsed().as_secs_f64();
    println!(
        "read {rows} rows, {} MB of text, from {} MB in {elapsed:.2} s: {:.1} MB/s",
        text_bytes >> 20,
        size >> 20,
        size as f64 / (1 << 20) as f64 / elapsed
    );
    assert_eq!(rows, blocks * block_rows);
    assert_eq!(documents.report().bytes_read, size);
}
