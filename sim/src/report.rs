//! A run's result: checker verdict, trace hash and scenario figures, as a
//! readable table or one JSON object.

use std::fmt::Write as _;

use crate::check::Checked;

/// A JSON-able value.
#[derive(Clone, Debug, PartialEq)]
pub enum Json {
    /// Integer.
    Int(u64),
    /// Float.
    Num(f64),
    /// Boolean.
    Bool(bool),
    /// String.
    Str(String),
    /// Object with ordered keys.
    Obj(Vec<(String, Json)>),
}

impl Json {
    fn write(&self, out: &mut String) {
        match self {
            Json::Int(n) => {
                let _ = write!(out, "{n}");
            }
            Json::Num(x) => {
                let _ = write!(out, "{x:.3}");
            }
            Json::Bool(b) => {
                let _ = write!(out, "{b}");
            }
            Json::Str(s) => {
                out.push('"');
                for c in s.chars() {
                    match c {
                        '"' => out.push_str("\\\""),
                        '\\' => out.push_str("\\\\"),
                        c if (c as u32) < 0x20 => {
                            let _ = write!(out, "\\u{:04x}", c as u32);
                        }
                        c => out.push(c),
                    }
                }
                out.push('"');
            }
            Json::Obj(fields) => {
                out.push('{');
                for (i, (k, v)) in fields.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    Json::Str(k.clone()).write(out);
                    out.push(':');
                    v.write(out);
                }
                out.push('}');
            }
        }
    }
}

/// The outcome of one simulated run.
#[derive(Clone, Debug)]
pub struct Report {
    /// Scenario name.
    pub scenario: &'static str,
    /// Seed.
    pub seed: u64,
    /// Hash of the event trace.
    pub trace_hash: u64,
    /// Events in the trace.
    pub trace_events: usize,
    /// No invariant was violated.
    pub ok: bool,
    /// What went wrong, if anything.
    pub violations: Vec<String>,
    /// Scenario-specific figures.
    pub fields: Vec<(String, Json)>,
    /// The trace text, when asked for.
    pub trace: Option<String>,
    /// Times the planted bug changed what a server did (with a plant).
    pub plant_fired: Option<u64>,
    /// What the checkers did (their wall-clock time is not in the JSON:
    /// it differs between runs of one seed).
    pub checked: Checked,
}

impl Report {
    /// One-line JSON with `scenario`, `seed`, `trace_hash`, `ok` and the
    /// scenario's fields.
    pub fn json(&self) -> String {
        let mut fields = vec![
            ("scenario".to_string(), Json::Str(self.scenario.into())),
            ("seed".to_string(), Json::Int(self.seed)),
            (
                "trace_hash".to_string(),
                Json::Str(format!("{:016x}", self.trace_hash)),
            ),
            ("ok".to_string(), Json::Bool(self.ok)),
        ];
        fields.extend(self.fields.iter().cloned());
        fields.push(("checked_ops".into(), Json::Int(self.checked.ops as u64)));
        if let Some(n) = self.plant_fired {
            fields.push(("plant_fired".into(), Json::Int(n)));
        }
        if self.checked.unknown > 0 {
            fields.push((
                "unchecked_keys".into(),
                Json::Int(self.checked.unknown as u64),
            ));
        }
        if !self.violations.is_empty() {
            fields.push(("violations".into(), Json::Str(self.violations.join("; "))));
        }
        let mut out = String::new();
        Json::Obj(fields).write(&mut out);
        out
    }

    /// A readable table.
    pub fn table(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "scenario     {}", self.scenario);
        let _ = writeln!(out, "seed         {}", self.seed);
        let _ = writeln!(
            out,
            "trace_hash   {:016x} ({} events)",
            self.trace_hash, self.trace_events
        );
        let _ = writeln!(out, "ok           {}", self.ok);
        for (k, v) in &self.fields {
            let mut s = String::new();
            v.write(&mut s);
            let _ = writeln!(out, "{k:<12} {s}");
        }
        if let Some(n) = self.plant_fired {
            let _ = writeln!(out, "plant_fired  {n}");
        }
        let _ = writeln!(
            out,
            "checked      {} ops on {} keys, {} search steps, {:.1} ms{}",
            self.checked.ops,
            self.checked.keys,
            self.checked.steps,
            self.checked.elapsed.as_secs_f64() * 1000.0,
            if self.checked.unknown > 0 {
                format!(" ({} keys over budget, unchecked)", self.checked.unknown)
            } else {
                String::new()
            }
        );
        for v in &self.violations {
            let _ = writeln!(out, "VIOLATION    {v}");
        }
        out
    }
}
