//! Settings from the environment (and `.env`), with the fixed variable names of DESIGN.md.
