//! The table of malformed requests: each gets its documented status code and nothing of
//! it is stored.
