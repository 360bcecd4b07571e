//! A node whose rule is not implemented yet: it sits in the graph with its real parameters,
//! inputs and dependencies (so `graph plan`, `show` and `why` are truthful), and building it
//! fails with a message saying so.

use nosa_engine::{InputSpec, Params, Rule, RunContext, RunError};

/// A planned node without a runnable rule.
#[derive(Debug, Clone)]
pub struct PendingRule {
    /// The rule kind (`resolve`, `ostree-commit`, ...).
    pub kind: String,
    /// Parameters (name, canonical value).
    pub params: Vec<(String, String)>,
    /// Declared inputs.
    pub inputs: Vec<InputSpec>,
    /// Why it cannot run, when that is not "not implemented yet".
    pub reason: Option<String>,
}

impl PendingRule {
    /// A pending node of `kind`.
    pub fn new(kind: &str) -> Self {
        PendingRule {
            kind: kind.to_string(),
            params: Vec::new(),
            inputs: Vec::new(),
            reason: None,
        }
    }

    /// Sets the message building it fails with.
    pub fn because(mut self, reason: &str) -> Self {
        self.reason = Some(reason.to_string());
        self
    }

    /// Adds a parameter.
    pub fn param(mut self, name: &str, value: impl Into<String>) -> Self {
        self.params.push((name.to_string(), value.into()));
        self
    }

    /// Adds a parameter holding JSON (canonical: serde_json maps are sorted).
    pub fn json(self, name: &str, value: &serde_json::Value) -> Self {
        let v = serde_json::to_string(value).unwrap_or_default();
        self.param(name, v)
    }

    /// Adds an input.
    pub fn input(mut self, spec: InputSpec) -> Self {
        self.inputs.push(spec);
        self
    }
}

impl Rule for PendingRule {
    fn kind(&self) -> &str {
        &self.kind
    }

    fn version(&self) -> u32 {
        0
    }

    fn params(&self, p: &mut Params) {
        for (k, v) in &self.params {
            p.add(k, v);
        }
    }

    fn inputs(&self) -> Vec<InputSpec> {
        self.inputs.clone()
    }

    fn run(&self, _: &mut RunContext<'_>) -> Result<(), RunError> {
        if let Some(r) = &self.reason {
            return Err(RunError::msg(r.clone()));
        }
        Err(RunError::msg(format!(
            "the {} rule is not implemented yet; `nosa graph plan` shows where it sits in the graph",
            self.kind
        )))
    }
}
