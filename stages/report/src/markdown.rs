//! The Markdown rendering of the report (GitHub-flavoured tables). Figures are referenced as
//! `images/FILE`; [`crate::write_report`] writes those files next to `report.md`. Each table is
//! preceded by `<!-- table: ID -->` so it can be found by id.

use crate::doc::{Block, Document, NoteKind};

/// A table cell: pipes escaped, line breaks flattened.
fn cell(s: &str) -> String {
    s.replace('\\', "\\\\").replace('|', "\\|").replace(['\n', '\r'], " ")
}

pub fn render(doc: &Document) -> String {
    let mut o = String::new();
    o.push_str(&format!("# {}\n\n{}\n\n", doc.title, doc.subtitle));
    for s in &doc.sections {
        o.push_str(&format!("- [{}](#{})\n", s.title, s.id));
    }
    o.push('\n');
    for s in &doc.sections {
        o.push_str(&format!("<a id=\"{}\"></a>\n\n## {}\n\n", s.id, s.title));
        for b in &s.blocks {
            match b {
                Block::Heading(h) => o.push_str(&format!("### {h}\n\n")),
                Block::Para(p) => o.push_str(&format!("{p}\n\n")),
                Block::Facts(kv) => {
                    for (k, v) in kv {
                        o.push_str(&format!("- **{k}**: {v}\n"));
                    }
                    o.push('\n');
                }
                Block::Table(t) => {
                    o.push_str(&format!("<!-- table: {} -->\n", t.id));
                    if !t.caption.is_empty() {
                        o.push_str(&format!("**{}**\n\n", t.caption));
                    }
                    o.push_str(&format!("| {} |\n", t.headers.iter().map(|h| cell(h)).collect::<Vec<_>>().join(" | ")));
                    let align: Vec<&str> = (0..t.headers.len())
                        .map(|i| {
                            let numeric = !t.rows.is_empty()
                                && t.rows.iter().all(|r| matches!(r.get(i), Some(crate::doc::Cell::Num { .. })));
                            if numeric {
                                "---:"
                            } else {
                                "---"
                            }
                        })
                        .collect();
                    o.push_str(&format!("| {} |\n", align.join(" | ")));
                    for r in &t.rows {
                        o.push_str(&format!(
                            "| {} |\n",
                            r.iter().map(|c| cell(c.shown())).collect::<Vec<_>>().join(" | ")
                        ));
                    }
                    o.push('\n');
                }
                Block::Figures(fs) => {
                    for f in fs {
                        o.push_str(&format!("![{}](images/{})\n\n", f.caption.replace(['[', ']'], ""), f.file));
                    }
                }
                Block::Note(kind, text) => {
                    let lead = match kind {
                        NoteKind::Missing => "**Not in this run:** ",
                        NoteKind::Problem => "**Problem:** ",
                        NoteKind::Warning => "**Warning:** ",
                        NoteKind::Info => "",
                    };
                    o.push_str(&format!("> {lead}{text}\n\n"));
                }
            }
        }
    }
    o
}
