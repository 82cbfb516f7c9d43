//! PLACEHOLDER: being written (schema helper).
