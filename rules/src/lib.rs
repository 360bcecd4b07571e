//! NestOS rules: one module per node kind, plus the user-defined `[[step]]` rule.
