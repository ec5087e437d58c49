//! Turning raw rows into documents: the text taken from one column or built from a template, every other
//! column kept as metadata.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, RecordBatch, StringArray, StringBuilder};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::util::display::{ArrayFormatter, FormatOptions};

use super::{Batches, RawBatch, ReadReport, TextField};
use crate::error::{Error, Result};

/// The name a source's own `text` column takes among the metadata when the documents' text comes from
/// another column or a template.
pub const RENAMED_TEXT: &str = "original_text";

/// A piece of a template.
#[derive(Debug, Clone)]
enum Part {
    Literal(String),
    Field(usize),
}

fn parse_template(template: &str) -> Result<Vec<(bool, String)>> {
    let bad = |why: &str| Error::InvalidArgument(format!("text template {template:?}: {why}"));
    let mut parts = Vec::new();
    let mut literal = String::new();
    let mut chars = template.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '{' if chars.peek() == Some(&'{') => {
                chars.next();
                literal.push('{');
            }
            '}' if chars.peek() == Some(&'}') => {
                chars.next();
                literal.push('}');
            }
            '{' => {
                let mut name = String::new();
                loop {
                    match chars.next() {
                        Some('}') => break,
                        Some(c) => name.push(c),
                        None => return Err(bad("a `{` is never closed (write `{{` for a literal brace)")),
                    }
                }
                if name.trim().is_empty() {
                    return Err(bad("`{}` names no field"));
                }
                if !literal.is_empty() {
                    parts.push((false, std::mem::take(&mut literal)));
                }
                parts.push((true, name.trim().to_string()));
            }
            '}' => return Err(bad("a `}` has no `{` (write `}}` for a literal brace)")),
            c => literal.push(c),
        }
    }
    if !literal.is_empty() {
        parts.push((false, literal));
    }
    if !parts.iter().any(|(is_field, _)| *is_field) {
        return Err(bad("it names no field; write fields as {column}"));
    }
    Ok(parts)
}

/// The columns a template reads.
pub fn template_fields(template: &str) -> Result<Vec<String>> {
    Ok(parse_template(template)?.into_iter().filter(|(f, _)| *f).map(|(_, n)| n).collect())
}

enum Mapping {
    Column(usize),
    Template(Vec<Part>),
}

/// Documents of a source, batch by batch: a `text` column, then the metadata columns.
pub struct Documents {
    batches: Batches,
    mapping: Mapping,
    metadata: Vec<usize>,
    schema: SchemaRef,
    text_name: String,
}

impl Documents {
    pub(super) fn new(batches: Batches, text: &TextField) -> Result<Documents> {
        let raw = batches.schema();
        let first_file = batches.files.first().cloned().unwrap_or_default();
        let index_of = |name: &str| {
            raw.index_of(name).map_err(|_| Error::MissingColumn {
                path: first_file.clone(),
                column: name.to_string(),
                available: raw.fields().iter().map(|f| f.name().clone()).collect(),
            })
        };
        let (mapping, used, text_name) = match text {
            TextField::Column(name) => {
                let i = index_of(name)?;
                match raw.field(i).data_type() {
                    DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View | DataType::Null => {}
                    other => {
                        return Err(Error::InvalidArgument(format!(
                            "{}: column `{name}` holds {other}, not text; choose a text column or build the text \
                             with a template",
                            first_file.display()
                        )));
                    }
                }
                (Mapping::Column(i), vec![i], name.clone())
            }
            TextField::Template(template) => {
                let mut parts = Vec::new();
                for (is_field, value) in parse_template(template)? {
                    parts.push(if is_field { Part::Field(index_of(&value)?) } else { Part::Literal(value) });
                }
                (Mapping::Template(parts), vec![], "template".to_string())
            }
        };
        let metadata: Vec<usize> = (0..raw.fields().len()).filter(|i| !used.contains(i)).collect();
        let mut fields = vec![Field::new("text", DataType::Utf8, false)];
        // A source column that is itself called `text` (when the text comes from elsewhere) is kept, renamed.
        fields.extend(metadata.iter().map(|&i| {
            let field = raw.field(i).clone();
            if field.name() == "text" { field.with_name(RENAMED_TEXT) } else { field }
        }));
        Ok(Documents { batches, mapping, metadata, schema: Arc::new(Schema::new(fields)), text_name })
    }

    /// The schema of the document batches.
    pub fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    /// What has been read so far.
    pub fn report(&self) -> ReadReport {
        self.batches.report()
    }

    /// The counters this read updates, for watching progress from another thread.
    pub fn counters(&self) -> Arc<super::Counters> {
        self.batches.counters()
    }

    fn convert(&self, raw: RawBatch) -> Result<RecordBatch> {
        let (batch, path) = (&raw.batch, &raw.path);
        let format_error = |e| Error::format(path, e);
        let text: ArrayRef = match &self.mapping {
            Mapping::Column(i) => arrow::compute::cast(batch.column(*i), &DataType::Utf8).map_err(format_error)?,
            Mapping::Template(parts) => Arc::new(render(parts, batch, path)?),
        };
        let mut columns = vec![text.clone()];
        columns.extend(self.metadata.iter().map(|&i| batch.column(i).clone()));
        if text.null_count() > 0 {
            for row in (0..text.len()).filter(|&row| text.is_null(row)) {
                self.batches.options().bad_record(Error::NotText {
                    path: path.clone(),
                    location: raw.locations.describe(row),
                    column: self.text_name.clone(),
                    found: "null (or a missing field)".into(),
                })?;
            }
            let mask = arrow::compute::is_not_null(&text).map_err(format_error)?;
            columns = columns
                .iter()
                .map(|c| arrow::compute::filter(c, &mask))
                .collect::<std::result::Result<_, _>>()
                .map_err(format_error)?;
        }
        RecordBatch::try_new(self.schema.clone(), columns).map_err(format_error)
    }
}

/// Renders a template for every row: null fields render as nothing.
fn render(parts: &[Part], batch: &RecordBatch, path: &std::path::Path) -> Result<StringArray> {
    let options = FormatOptions::default().with_null("");
    let formatters = parts
        .iter()
        .map(|p| match p {
            Part::Field(i) => ArrayFormatter::try_new(batch.column(*i).as_ref(), &options).map(Some),
            Part::Literal(_) => Ok(None),
        })
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| Error::format(path, e))?;
    let mut out = StringBuilder::new();
    let mut text = String::new();
    for row in 0..batch.num_rows() {
        text.clear();
        for (part, formatter) in parts.iter().zip(&formatters) {
            match (part, formatter) {
                (Part::Literal(s), _) => text.push_str(s),
                (Part::Field(_), Some(f)) => {
                    use std::fmt::Write;
                    let _ = write!(text, "{}", f.value(row));
                }
                (Part::Field(_), None) => {}
            }
        }
        out.append_value(&text);
    }
    Ok(out.finish())
}

impl Iterator for Documents {
    type Item = Result<RecordBatch>;

    fn next(&mut self) -> Option<Self::Item> {
        let raw = match self.batches.next()? {
            Ok(raw) => raw,
            Err(e) => return Some(Err(e)),
        };
        let converted = self.convert(raw);
        if converted.is_err() {
            self.batches.failed = true;
        }
        Some(converted)
    }
}
