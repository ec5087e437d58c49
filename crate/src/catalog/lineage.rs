//! An artifact's lineage as a researcher reads it: everything it was made from (parents, their parents…)
//! and everything made from it, as a table and a small left-to-right SVG graph.

use std::collections::{BTreeMap, HashMap};

use serde::Serialize;

use super::artifacts::ArtifactRef;
use super::db::Catalog;
use crate::display::{MimeBundle, Render, STYLE, Table, escape};
use crate::error::Result;

/// The chain around one artifact.
#[derive(Debug, Clone, Serialize)]
pub struct Lineage {
    /// The artifact asked about.
    pub focus: ArtifactRef,
    /// Every artifact in the chain (the focus included), with its depth: negative for what it was made
    /// from, positive for what was made from it.
    pub nodes: Vec<(ArtifactRef, i32)>,
    /// (parent id, child id) links.
    pub edges: Vec<(i64, i64)>,
}

impl Lineage {
    /// Reads the lineage of artifact `id`.
    pub fn of(catalog: &Catalog, id: i64) -> Result<Lineage> {
        catalog.with_conn(|conn| {
            let row = catalog.artifact_in(conn, id)?;
            let focus = ArtifactRef { id, kind: row.kind, name: row.name, status: row.status };
            let mut depth: HashMap<i64, i32> = HashMap::from([(id, 0)]);
            let mut nodes = vec![(focus.clone(), 0)];
            let mut edges = Vec::new();
            // Up through parents, then down through children; each artifact once, at its first depth.
            for up in [true, false] {
                let mut frontier = vec![id];
                while let Some(current) = frontier.pop() {
                    let d = depth[&current];
                    let next =
                        if up { catalog.parents_in(conn, current)? } else { catalog.children_in(conn, current)? };
                    for other in next {
                        edges.push(if up { (other.id, current) } else { (current, other.id) });
                        if !depth.contains_key(&other.id) {
                            let od = if up { d - 1 } else { d + 1 };
                            depth.insert(other.id, od);
                            frontier.push(other.id);
                            nodes.push((other, od));
                        }
                    }
                }
            }
            edges.sort_unstable();
            edges.dedup();
            nodes.sort_by_key(|(node, d)| (*d, node.id));
            Ok(Lineage { focus, nodes, edges })
        })
    }

    /// The artifacts it was made from, directly or not.
    pub fn ancestors(&self) -> Vec<&ArtifactRef> {
        self.nodes.iter().filter(|(_, d)| *d < 0).map(|(n, _)| n).collect()
    }

    /// The artifacts made from it, directly or not.
    pub fn descendants(&self) -> Vec<&ArtifactRef> {
        self.nodes.iter().filter(|(_, d)| *d > 0).map(|(n, _)| n).collect()
    }

    fn table(&self) -> Table {
        let mut table = Table::new(
            format!(
                "Lineage of {} · {} made from · {} made from it",
                self.focus,
                self.ancestors().len(),
                self.descendants().len()
            ),
            &["id", "kind", "name", "status", "made from"],
        );
        let names: HashMap<i64, &str> = self.nodes.iter().map(|(n, _)| (n.id, n.name.as_str())).collect();
        for (node, _) in &self.nodes {
            let parents: Vec<&str> =
                self.edges.iter().filter(|(_, c)| *c == node.id).filter_map(|(p, _)| names.get(p).copied()).collect();
            table.row(vec![
                node.id.to_string(),
                node.kind.clone(),
                node.name.clone(),
                node.status.to_string(),
                parents.join(", "),
            ]);
        }
        table
    }

    /// The graph as SVG: one column per depth, boxes named by kind and name, arrows from parent to child.
    pub fn svg(&self) -> String {
        const W: i32 = 190;
        const H: i32 = 44;
        const GAP_X: i32 = 60;
        const GAP_Y: i32 = 16;
        let min_depth = self.nodes.iter().map(|(_, d)| *d).min().unwrap_or(0);
        let mut columns: BTreeMap<i32, Vec<&ArtifactRef>> = BTreeMap::new();
        for (node, d) in &self.nodes {
            columns.entry(*d).or_default().push(node);
        }
        let rows = columns.values().map(Vec::len).max().unwrap_or(1) as i32;
        let width = columns.len() as i32 * (W + GAP_X) - GAP_X + 20;
        let height = rows * (H + GAP_Y) - GAP_Y + 20;
        let mut at: HashMap<i64, (i32, i32)> = HashMap::new();
        for (d, nodes) in &columns {
            for (i, node) in nodes.iter().enumerate() {
                at.insert(node.id, (10 + (d - min_depth) * (W + GAP_X), 10 + i as i32 * (H + GAP_Y)));
            }
        }
        let mut svg = format!(
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"{height}\" viewBox=\"0 0 {width} {height}\" \
             font-family=\"sans-serif\" font-size=\"12\"><defs><marker id=\"arrow\" viewBox=\"0 0 10 10\" refX=\"10\" refY=\"5\" \
             markerWidth=\"7\" markerHeight=\"7\" orient=\"auto\"><path d=\"M0,0 L10,5 L0,10 z\" fill=\"#888\"/></marker></defs>"
        );
        for (parent, child) in &self.edges {
            if let (Some(&(px, py)), Some(&(cx, cy))) = (at.get(parent), at.get(child)) {
                svg.push_str(&format!(
                    "<line x1=\"{}\" y1=\"{}\" x2=\"{}\" y2=\"{}\" stroke=\"#888\" marker-end=\"url(#arrow)\"/>",
                    px + W,
                    py + H / 2,
                    cx,
                    cy + H / 2
                ));
            }
        }
        for (node, _) in &self.nodes {
            let (x, y) = at[&node.id];
            let focus = node.id == self.focus.id;
            let name = crate::display::truncate(&node.name, 28);
            svg.push_str(&format!(
                "<g><title>{} #{} ({})</title><rect x=\"{x}\" y=\"{y}\" width=\"{W}\" height=\"{H}\" rx=\"5\" fill=\"{}\" \
                 stroke=\"{}\" stroke-width=\"{}\"/><text x=\"{}\" y=\"{}\" fill=\"#666\">{} · {}</text>\
                 <text x=\"{}\" y=\"{}\" fill=\"#222\">{}</text></g>",
                escape(&node.name),
                node.id,
                node.status,
                if focus { "#e8f0fe" } else { "#f6f6f6" },
                if focus { "#3367d6" } else { "#bbb" },
                if focus { 2 } else { 1 },
                x + 8,
                y + 17,
                escape(&node.kind),
                node.status,
                x + 8,
                y + 34,
                escape(&name),
            ));
        }
        svg.push_str("</svg>");
        svg
    }
}

impl Render for Lineage {
    fn bundle(&self) -> MimeBundle {
        let table = self.table();
        let html = format!("{STYLE}<div class=\"saekit\">{}{}</div>", self.svg(), table.html_fragment());
        MimeBundle::new(table.plain()).with("text/html", html).with("image/svg+xml", self.svg())
    }
}
