//! Side-by-side benchmark drivers live in `src/bin/`; criterion benches in `benches/`.
