//! The self-contained HTML page: inline CSS, SVG figures inlined, PNG figures as data URIs,
//! no scripts and no external resources. Numeric cells carry the exact value read from the
//! run's files in `data-v` (shortest round-trip form), next to the rounded text.

use crate::doc::{Block, Cell, Document, Figure, FigureContent, NoteKind, Table};
use crate::svg::esc;
use std::fmt::Write;

const CSS: &str = r#"
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;color:#1d1d1f;background:#fafafa;line-height:1.45}
header{background:#1d3557;color:#fff;padding:18px 32px}
header h1{margin:0;font-size:24px}
header p{margin:4px 0 0;opacity:.85}
nav{padding:8px 32px;background:#eef2f6;border-bottom:1px solid #d7dee6}
nav ol{margin:0;padding:0;list-style:none;display:flex;flex-wrap:wrap;gap:4px 18px}
nav a{color:#1d3557;text-decoration:none}
main{padding:8px 32px 32px;max-width:1600px}
section{background:#fff;border:1px solid #e2e6ea;border-radius:6px;margin:18px 0;padding:4px 20px 16px}
h2{border-bottom:2px solid #457b9d;padding-bottom:4px}
h3{margin-top:22px;color:#1d3557}
table.data{border-collapse:collapse;margin:10px 0 14px;font-size:13px}
table.data caption{text-align:left;font-weight:600;padding:4px 0;color:#333}
table.data th,table.data td{border:1px solid #dde2e6;padding:3px 8px}
table.data th{background:#f1f4f7;text-align:left}
table.data td.num{text-align:right;font-variant-numeric:tabular-nums}
table.data tbody tr:nth-child(even){background:#fafbfc}
dl.facts{display:grid;grid-template-columns:max-content auto;gap:2px 16px;margin:10px 0}
dl.facts dt{font-weight:600;color:#444}
dl.facts dd{margin:0}
div.figs{display:flex;flex-wrap:wrap;gap:14px;margin:10px 0}
figure{margin:0;overflow-x:auto;max-width:100%}
figcaption{font-size:12px;color:#555;margin-top:2px;max-width:640px}
p.note{padding:6px 10px;border-radius:4px;margin:8px 0}
p.note.missing{background:#fff6e0;border-left:4px solid #e9c46a}
p.note.problem{background:#fdecea;border-left:4px solid #e63946}
p.note.warning{background:#fff6e0;border-left:4px solid #f4a261}
p.note.info{background:#eef5fb;border-left:4px solid #457b9d}
details{margin:8px 0}
summary{cursor:pointer;color:#1d3557;font-weight:600}
footer{color:#888;font-size:12px;padding:0 32px 24px}
"#;

/// Standard base64 (RFC 4648, with padding).
pub fn base64(data: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut o = String::with_capacity(data.len().div_ceil(3) * 4);
    for c in data.chunks(3) {
        let b = [c[0], *c.get(1).unwrap_or(&0), *c.get(2).unwrap_or(&0)];
        let n = (b[0] as u32) << 16 | (b[1] as u32) << 8 | b[2] as u32;
        o.push(A[(n >> 18) as usize & 63] as char);
        o.push(A[(n >> 12) as usize & 63] as char);
        o.push(if c.len() > 1 { A[(n >> 6) as usize & 63] as char } else { '=' });
        o.push(if c.len() > 2 { A[n as usize & 63] as char } else { '=' });
    }
    o
}

fn table(o: &mut String, t: &Table) {
    let mut inner = String::new();
    let _ = write!(inner, r#"<table class="data" id="t-{}">"#, esc(&t.id));
    if !t.caption.is_empty() && !t.folded {
        let _ = write!(inner, "<caption>{}</caption>", esc(&t.caption));
    }
    inner.push_str("<thead><tr>");
    for h in &t.headers {
        let _ = write!(inner, "<th>{}</th>", esc(h));
    }
    inner.push_str("</tr></thead><tbody>");
    for r in &t.rows {
        inner.push_str("<tr>");
        for c in r {
            match c {
                Cell::Text(s) => {
                    let _ = write!(inner, "<td>{}</td>", esc(s));
                }
                Cell::Num { value, text } => {
                    let _ = write!(inner, r#"<td class="num" data-v="{value}">{}</td>"#, esc(text));
                }
            }
        }
        inner.push_str("</tr>");
    }
    inner.push_str("</tbody></table>");
    if t.folded {
        let _ = write!(o, "<details><summary>{} ({} rows)</summary>{inner}</details>", esc(&t.caption), t.rows.len());
    } else {
        o.push_str(&inner);
    }
}

fn figure(o: &mut String, f: &Figure) {
    let _ = write!(o, r#"<figure id="f-{}">"#, esc(&f.file));
    match &f.content {
        FigureContent::Svg(svg) => o.push_str(svg),
        FigureContent::Png(png) => {
            let _ = write!(o, r#"<img src="data:image/png;base64,{}" alt="{}">"#, base64(png), esc(&f.caption));
        }
    }
    let _ = write!(o, "<figcaption>{}</figcaption></figure>", esc(&f.caption));
}

/// The page.
pub fn render(doc: &Document) -> String {
    let mut o = String::with_capacity(1 << 16);
    let _ = write!(
        o,
        r#"<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1"><meta name="generator" content="nnunet-report"><title>{t}</title><style>{CSS}</style></head><body><header><h1>{t}</h1><p>{s}</p></header><nav><ol>"#,
        t = esc(&doc.title),
        s = esc(&doc.subtitle)
    );
    for s in &doc.sections {
        let _ = write!(o, r##"<li><a href="#{}">{}</a></li>"##, esc(&s.id), esc(&s.title));
    }
    o.push_str("</ol></nav><main>");
    for s in &doc.sections {
        let _ = write!(o, r#"<section id="{}"><h2>{}</h2>"#, esc(&s.id), esc(&s.title));
        for b in &s.blocks {
            match b {
                Block::Heading(h) => {
                    let _ = write!(o, "<h3>{}</h3>", esc(h));
                }
                Block::Para(p) => {
                    let _ = write!(o, "<p>{}</p>", esc(p));
                }
                Block::Facts(kv) => {
                    o.push_str(r#"<dl class="facts">"#);
                    for (k, v) in kv {
                        let _ = write!(o, "<dt>{}</dt><dd>{}</dd>", esc(k), esc(v));
                    }
                    o.push_str("</dl>");
                }
                Block::Table(t) => table(&mut o, t),
                Block::Figures(fs) => {
                    o.push_str(r#"<div class="figs">"#);
                    for f in fs {
                        figure(&mut o, f);
                    }
                    o.push_str("</div>");
                }
                Block::Note(kind, text) => {
                    let (class, lead) = match kind {
                        NoteKind::Missing => ("missing", "Not in this run: "),
                        NoteKind::Problem => ("problem", "Problem: "),
                        NoteKind::Warning => ("warning", "Warning: "),
                        NoteKind::Info => ("info", ""),
                    };
                    let _ = write!(o, r#"<p class="note {class}">{lead}{}</p>"#, esc(text));
                }
            }
        }
        o.push_str("</section>");
    }
    o.push_str("</main><footer>Generated by nnunet-report from the run folder's files; every number is read from them (numeric cells carry the exact value in data-v).</footer></body></html>\n");
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_rfc4648_vectors() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(b"foobar"), "Zm9vYmFy");
    }
}
