//! A Thrift binary encoder of Jaeger structs, for tests only.
