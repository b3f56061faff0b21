//! Node trees (see ARCHITECTURE.md).
