//! The report as a renderer-neutral document: sections of headings, prose, key/value lists,
//! tables and figures. [`crate::html`] and [`crate::markdown`] render the same document, so the
//! page and the Markdown show the same numbers and figures.

/// One table cell.
#[derive(Clone, Debug, PartialEq)]
pub enum Cell {
    Text(String),
    /// A number: the value as read from the run's files, and its printed form.
    Num {
        value: f64,
        text: String,
    },
}

impl Cell {
    pub fn text(s: impl Into<String>) -> Cell {
        Cell::Text(s.into())
    }
    pub fn num(value: f64, format: fn(f64) -> String) -> Cell {
        Cell::Num { value, text: format(value) }
    }
    pub fn int(value: i64) -> Cell {
        Cell::Num { value: value as f64, text: value.to_string() }
    }
    pub fn shown(&self) -> &str {
        match self {
            Cell::Text(s) => s,
            Cell::Num { text, .. } => text,
        }
    }
}

/// A table. `id` is stable (tests and readers find tables by it).
#[derive(Clone, Debug, PartialEq)]
pub struct Table {
    pub id: String,
    pub caption: String,
    pub headers: Vec<String>,
    pub rows: Vec<Vec<Cell>>,
    /// Long tables are folded (`<details>`) in the HTML page.
    pub folded: bool,
}

impl Table {
    pub fn new(id: &str, caption: impl Into<String>, headers: Vec<String>) -> Table {
        Table { id: id.to_string(), caption: caption.into(), headers, rows: Vec::new(), folded: false }
    }
}

/// An image. SVGs are inlined in the page; PNGs become data URIs. Both are written to
/// `images/{file}` for the Markdown.
#[derive(Clone, Debug, PartialEq)]
pub struct Figure {
    /// File name inside `images/` (unique within a report).
    pub file: String,
    pub caption: String,
    pub content: FigureContent,
}

#[derive(Clone, Debug, PartialEq)]
pub enum FigureContent {
    Svg(String),
    Png(Vec<u8>),
}

/// How a note is shown.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NoteKind {
    /// Something the run does not have (a stage that did not run).
    Missing,
    /// A file that exists but could not be read, a failed unit.
    Problem,
    /// A result that is there but not what a user wants (a label not learned).
    Warning,
    Info,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Block {
    /// A sub-heading (level 3).
    Heading(String),
    Para(String),
    /// `key: value` lines.
    Facts(Vec<(String, String)>),
    Table(Table),
    /// Figures shown side by side.
    Figures(Vec<Figure>),
    Note(NoteKind, String),
}

/// A top-level section (level 2 heading, listed in the table of contents).
#[derive(Clone, Debug, PartialEq)]
pub struct Section {
    pub id: String,
    pub title: String,
    pub blocks: Vec<Block>,
}

impl Section {
    pub fn new(id: &str, title: &str) -> Section {
        Section { id: id.to_string(), title: title.to_string(), blocks: Vec::new() }
    }
    pub fn push(&mut self, b: Block) {
        self.blocks.push(b);
    }
    pub fn missing(&mut self, msg: impl Into<String>) {
        self.blocks.push(Block::Note(NoteKind::Missing, msg.into()));
    }
    pub fn problem(&mut self, msg: impl Into<String>) {
        self.blocks.push(Block::Note(NoteKind::Problem, msg.into()));
    }
    pub fn warning(&mut self, msg: impl Into<String>) {
        self.blocks.push(Block::Note(NoteKind::Warning, msg.into()));
    }
    pub fn info(&mut self, msg: impl Into<String>) {
        self.blocks.push(Block::Note(NoteKind::Info, msg.into()));
    }
}

/// The whole report.
#[derive(Clone, Debug, PartialEq)]
pub struct Document {
    pub title: String,
    /// One line under the title.
    pub subtitle: String,
    pub sections: Vec<Section>,
}

impl Document {
    /// Every figure, in document order.
    pub fn figures(&self) -> impl Iterator<Item = &Figure> {
        self.sections.iter().flat_map(|s| &s.blocks).flat_map(|b| match b {
            Block::Figures(f) => f.as_slice(),
            _ => &[],
        })
    }

    /// Every table, in document order.
    pub fn tables(&self) -> impl Iterator<Item = &Table> {
        self.sections.iter().flat_map(|s| &s.blocks).filter_map(|b| match b {
            Block::Table(t) => Some(t),
            _ => None,
        })
    }
}

/// A file-name-safe form of `s` (`3d_fullres` stays, `ensemble___a___b` stays, `/` and spaces become `_`).
pub fn slug(s: &str) -> String {
    let out: String = s
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.' { c } else { '_' })
        .collect();
    if out.is_empty() {
        "x".into()
    } else {
        out
    }
}
