//! Parser tests: valid queries with their normalised form, invalid queries
//! with the expected error position and message, and property tests.

use proptest::prelude::*;

use crate::ast::{
    Aggregate, Attribute, AttributeScope, CompareOp, Comparison, Field, FieldExpr, Intrinsic,
    Literal, Query, SpansetExpr, SpansetFilter, SpansetOp, Stage,
};
use crate::parse;
use chaintrace_model::{DurationNanos, SpanKind, StatusCode};

/// Each valid query and its normalised `Display` (None: prints as written).
const VALID: &[(&str, Option<&str>)] = &[
    ("{}", None),
    ("{ }", Some("{}")),
    ("{true}", Some("{ true }")),
    // every intrinsic, both spellings
    (r#"{ name = "llm_call" }"#, None),
    (
        r#"{ span:name = "llm_call" }"#,
        Some(r#"{ name = "llm_call" }"#),
    ),
    ("{ status = error }", None),
    ("{ span:status != ok }", Some("{ status != ok }")),
    ("{ status = unset }", None),
    (r#"{ statusMessage =~ "Rate.*" }"#, None),
    (
        r#"{ span:statusMessage = "" }"#,
        Some(r#"{ statusMessage = "" }"#),
    ),
    ("{ duration > 900ms }", None),
    ("{ span:duration <= 2m }", Some("{ duration <= 2m }")),
    ("{ kind = server }", None),
    ("{ span:kind != client }", Some("{ kind != client }")),
    (
        "{ kind = internal || kind = producer || kind = consumer || kind = unspecified }",
        None,
    ),
    (r#"{ rootName = "process_query" }"#, None),
    (
        r#"{ trace:rootName != "x" }"#,
        Some(r#"{ rootName != "x" }"#),
    ),
    (r#"{ rootServiceName = "rag-chain" }"#, None),
    (
        r#"{ trace:rootService = "rag-chain" }"#,
        Some(r#"{ rootServiceName = "rag-chain" }"#),
    ),
    ("{ traceDuration >= 1s }", None),
    ("{ trace:duration < 1h }", Some("{ traceDuration < 1h }")),
    // attributes
    (r#"{ span.gen_ai.request.model =~ "claude.*" }"#, None),
    (r#"{ resource.service.name = "rag" }"#, None),
    (r#"{ .error_type = "RateLimitError" }"#, None),
    (r#"{ span."my attr" = 1 }"#, None),
    (r#"{ resource."a\"b" != 2 }"#, None),
    (r#"{ span.http.user-agent = "curl" }"#, None),
    (r#"{ span.x = nil }"#, None),
    (r#"{ .x != nil }"#, None),
    // every comparison operator and literal kind
    (
        "{ span.n = 1 && span.n != 2 && span.n > 3 && span.n >= -4 && span.n < 5 && span.n <= 6 }",
        None,
    ),
    (r#"{ span.s =~ "a|b" && span.s !~ "c" }"#, None),
    ("{ span.f > 0.5 && span.f < 1.0 }", None),
    ("{ span.b = true || span.b = false }", None),
    ("{ span.d > 10ns && span.d < 100us }", None),
    ("{ duration = 1.5s }", Some("{ duration = 1500ms }")),
    ("{ duration = 90s }", Some("{ duration = 90s }")),
    ("{ duration = 1m30s }", Some("{ duration = 90s }")),
    ("{ duration = 0s }", Some("{ duration = 0ns }")),
    ("{ span.x = 1.0 }", None),
    ("{ span.x = -0.25 }", None),
    (
        r#"{ span.s = "tab\there \"q\" \\ \u00e9" }"#,
        Some("{ span.s = \"tab\\there \\\"q\\\" \\\\ é\" }"),
    ),
    (
        "{ span.s =~ `\\d+\\.RateLimitError` }",
        Some(r#"{ span.s =~ "\\d+\\.RateLimitError" }"#),
    ),
    // boolean structure
    (r#"{ !(name = "a") }"#, None),
    (r#"{ !name = "a" }"#, Some(r#"{ !(name = "a") }"#)),
    (
        r#"{ name = "a" || name = "b" && status = error }"#,
        Some(r#"{ (name = "a" || name = "b") && status = error }"#),
    ),
    (r#"{ name = "a" || (name = "b" && status = error) }"#, None),
    (r#"{ ((name = "a")) }"#, Some(r#"{ name = "a" }"#)),
    // spanset operators
    (r#"{ name = "a" } && { name = "b" }"#, None),
    (r#"{ name = "a" } || { name = "b" }"#, None),
    (r#"{ name = "a" } > { name = "b" }"#, None),
    (r#"{ name = "a" } >> { name = "b" }"#, None),
    (r#"{ name = "a" } < { name = "b" }"#, None),
    (r#"{ name = "a" } << { name = "b" }"#, None),
    (r#"{ name = "a" } ~ { name = "b" }"#, None),
    (r#"{ name = "a" } > { name = "b" } > { name = "c" }"#, None),
    (
        r#"{ name = "a" } > ({ name = "b" } > { name = "c" })"#,
        None,
    ),
    (r#"{ name = "a" } > { name = "b" } && { name = "c" }"#, None),
    (
        r#"{ name = "a" } > ({ name = "b" } && { name = "c" })"#,
        None,
    ),
    (
        r#"({ name = "a" } || { name = "b" }) && { name = "c" }"#,
        None,
    ),
    (
        r#"{ name = "a" } || { name = "b" } && { name = "c" }"#,
        Some(r#"({ name = "a" } || { name = "b" }) && { name = "c" }"#),
    ),
    (r#"(({ name = "a" }))"#, Some(r#"{ name = "a" }"#)),
    // pipelines
    ("{} | count() > 3", None),
    ("{ } | count() >= 1.5", Some("{} | count() >= 1.5")),
    ("{} | avg(duration) > 1s", None),
    ("{} | max(duration) > 1s | min(duration) < 10ms", None),
    ("{} | sum(span.tokens) > 1000", None),
    ("{} | avg(span.cost) > 0.01", None),
    ("{} | max(traceDuration) = 2s", None),
    (
        r#"{ status = error } | select(span.gen_ai.request.model, resource.service.name, name, duration)"#,
        None,
    ),
    (r#"{} | { name = "x" } | select(.a)"#, None),
    (r#"({ name = "a" } | count() > 1) && { name = "b" }"#, None),
    (
        r#"({ name = "a" } | count() > 1) | select(name)"#,
        Some(r#"{ name = "a" } | count() > 1 | select(name)"#),
    ),
    (r#"{ name = "a" } && { name = "b" } | count() = 2"#, None),
    // the founding question
    (
        r#"{ name = "llm_call" && status = error } >> { span.error_type = "RateLimitError" || span.error.type = "RateLimitError" || span.exception.type = "RateLimitError" }"#,
        None,
    ),
    (
        "{name=\"llm_call\"&&status=error}>{.error_type=\"RateLimitError\"}",
        Some(r#"{ name = "llm_call" && status = error } > { .error_type = "RateLimitError" }"#),
    ),
    ("{\n  name = \"a\"\n}", Some(r#"{ name = "a" }"#)),
];

#[test]
fn valid_queries_parse_and_print_normalised() {
    for (text, normalised) in VALID {
        let query = parse(text).unwrap_or_else(|e| panic!("{text:?} should parse: {e}"));
        let printed = query.to_string();
        assert_eq!(
            printed,
            normalised.unwrap_or(text),
            "normalised form of {text:?}"
        );
        let again = parse(&printed).unwrap_or_else(|e| panic!("{printed:?} should re-parse: {e}"));
        assert_eq!(again, query, "round trip of {text:?}");
    }
}

/// Each invalid query, the byte position of the error, and a fragment of its message.
const INVALID: &[(&str, usize, &str)] = &[
    ("", 0, "expected a spanset filter \"{ ... }\" or \"(\", found end of query"),
    ("name = \"x\"", 0, "found \"name\""),
    ("{", 1, "expected a field such as name"),
    ("{ name = \"a\" ", 13, "expected \"&&\", \"||\" or \"}\", found end of query"),
    ("{ name \"llm_call\" }", 7, "expected a comparison operator (=, !=, >, >=, <, <=, =~, !~), found \"llm_call\""),
    ("{ name = \"a\" llm_call }", 13, "expected \"&&\", \"||\" or \"}\", found \"llm_call\""),
    ("{ foo = 1 }", 2, "expected a field such as name"),
    ("{ gen_ai.request.model = \"x\" }", 2, "an attribute needs a scope: span.gen_ai.request.model"),
    ("{ event.name = \"x\" }", 2, "found \"event.name\""),
    ("{ name = }", 9, "expected a value"),
    ("{ name == \"a\" }", 8, "expected a value"),
    ("{ span.status = error }", 16, "write \"error\" for text"),
    ("{ span.x = llm_call }", 11, "write \"llm_call\" for text"),
    ("{ duration = \"abc\" }", 13, "expected a duration such as 500ms or 1.5s to compare with duration, found \"abc\""),
    ("{ duration > 5 }", 13, "a duration such as 500ms"),
    ("{ duration =~ \"1s\" }", 11, "durations are not text"),
    ("{ traceDuration = \"x\" }", 18, "to compare with traceDuration"),
    ("{ status = 3 }", 11, "expected ok, error or unset (unquoted) to compare with status, found \"3\""),
    ("{ status = \"error\" }", 11, "ok, error or unset"),
    ("{ status > error }", 9, "expected = or != (status compares only for equality), found \">\""),
    ("{ kind = \"server\" }", 9, "server, client, internal"),
    ("{ kind < server }", 7, "kind compares only for equality"),
    ("{ name = 5 }", 9, "expected a \"string\" to compare with name, found \"5\""),
    ("{ name > 5 }", 9, "a \"string\" to compare with name"),
    ("{ rootName = nil }", 13, "to compare with rootName"),
    ("{ span.x > nil }", 9, "= or != (to compare with nil)"),
    ("{ span.x < true }", 9, "= or != (to compare with a boolean)"),
    ("{ span.x =~ 5 }", 12, "a \"string\" holding a regular expression"),
    ("{ span.x =~ \"(\" }", 12, "a valid regular expression"),
    ("{ span.x =~ \"a)|(b\" }", 12, "a valid regular expression"),
    ("{ name = \"abc }", 9, "a closing '\"'"),
    ("{ span.x =~ \"\\d\" }", 13, "backquoted"),
    ("{ duration > 5parsecs }", 13, "a duration such as 500ms"),
    ("{ span.x = 99999999999999999999 }", 11, "an integer between"),
    ("{ duration > -1s }", 13, "a duration that is not negative"),
    ("{ a # }", 4, "found \"#\""),
    ("{} {}", 3, "expected a spanset operator (&&, ||, >, >>, <, <<, ~), \"|\" or the end of the query, found \"{\""),
    ("{} >", 4, "expected a spanset filter"),
    ("{} & {}", 3, "expected \"&&\""),
    ("({}", 3, "expected \")\""),
    ("{} )", 3, "found \")\""),
    ("{ (name = \"a\" }", 14, "expected \")\", \"&&\" or \"||\""),
    ("{} |", 4, "a pipeline stage"),
    ("{} | foo()", 5, "a pipeline stage"),
    ("{} | count(name) > 1", 11, "count() takes no argument"),
    ("{} | count() > 1s", 15, "a number to compare with count()"),
    ("{} | count() =~ 1", 13, "aggregates are numbers"),
    ("{} | count()", 12, "a comparison operator (=, !=, >, >=, <, <=) after count()"),
    ("{} | avg(name) > 1", 9, "a number-valued field inside avg()"),
    ("{} | avg(duration) > 5", 21, "a duration such as 500ms or 1.5s to compare with avg(duration)"),
    ("{} | sum(span.t) > \"a\"", 19, "a number or a duration to compare with sum(span.t)"),
    ("{} | select()", 12, "expected a field"),
    ("{} | select(name,)", 17, "expected a field"),
    ("{} | select(name", 16, "expected \",\" or \")\""),
    ("{ span. = 1 }", 7, "an attribute name"),
    ("{\n  name ~ \"a\"\n}", 9, "a comparison operator"),
];

#[test]
fn invalid_queries_report_position_and_expectation() {
    for (text, position, fragment) in INVALID {
        let err = match parse(text) {
            Ok(q) => panic!("{text:?} should not parse, got {q}"),
            Err(e) => e,
        };
        let message = err.to_string();
        assert_eq!(err.position, *position, "position for {text:?}: {message}");
        assert!(
            message.starts_with(&format!("at {position}: expected ")),
            "{message}"
        );
        assert!(
            message.contains(fragment),
            "{text:?}: {message:?} lacks {fragment:?}"
        );
    }
}

#[test]
fn errors_carry_line_and_column() {
    let err = parse("{\n  name ~ \"a\"\n}").unwrap_err();
    assert_eq!((err.line, err.column), (2, 8));
    assert_eq!(err.found, "\"~\"");
    let err = parse("{ name = \"é\" llm }").unwrap_err();
    assert_eq!((err.position, err.line, err.column), (14, 1, 14));
}

#[test]
fn limits_are_errors_not_crashes() {
    let deep = format!("{}{{}}{}", "(".repeat(100), ")".repeat(100));
    assert!(parse(&deep).unwrap_err().expected.contains("nested"));
    let nots = format!("{{ {}true }}", "!".repeat(100));
    assert!(parse(&nots).is_err());
    let wide = vec!["{}"; 300].join(" && ");
    assert!(parse(&wide)
        .unwrap_err()
        .expected
        .contains("at most 256 operators"));
    let long = format!("{{ span.x = \"{}\" }}", "a".repeat(20_000));
    assert!(parse(&long).unwrap_err().expected.contains("bytes"));
    // Big but legal: a regex that compiles within the size limit.
    assert!(parse(r#"{ span.x =~ "[a-z]{1,50}" }"#).is_ok());
    assert!(parse(r#"{ span.x =~ "(\\w{100}){100}" }"#).is_err());
}

#[test]
fn colon_and_unscoped_spellings_give_the_same_tree() {
    let pairs = [
        ("{ name = \"x\" }", "{ span:name = \"x\" }"),
        ("{ status = error }", "{ span:status = error }"),
        ("{ duration > 1s }", "{ span:duration > 1000ms }"),
        ("{ kind = server }", "{ span:kind = server }"),
        (
            "{ statusMessage = \"m\" }",
            "{ span:statusMessage = \"m\" }",
        ),
        ("{ rootName = \"r\" }", "{ trace:rootName = \"r\" }"),
        (
            "{ rootServiceName = \"s\" }",
            "{ trace:rootService = \"s\" }",
        ),
        ("{ traceDuration > 2s }", "{ trace:duration > 2000ms }"),
    ];
    for (a, b) in pairs {
        assert_eq!(parse(a).unwrap(), parse(b).unwrap(), "{a} vs {b}");
    }
}

// ---- property tests ----

fn attr_name() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z_][a-z0-9_]{0,6}(\\.[a-z_][a-z0-9_]{0,6}){0,2}",
        "[ -~]{0,8}",
        "\\PC{0,4}",
    ]
}

fn field() -> impl Strategy<Value = Field> {
    let intrinsic = prop_oneof![
        Just(Intrinsic::Name),
        Just(Intrinsic::Status),
        Just(Intrinsic::StatusMessage),
        Just(Intrinsic::Duration),
        Just(Intrinsic::Kind),
        Just(Intrinsic::RootName),
        Just(Intrinsic::RootServiceName),
        Just(Intrinsic::TraceDuration),
    ];
    let scope = prop_oneof![
        Just(AttributeScope::Span),
        Just(AttributeScope::Resource),
        Just(AttributeScope::Any)
    ];
    prop_oneof![
        intrinsic.prop_map(Field::Intrinsic),
        (scope, attr_name()).prop_map(|(scope, name)| Field::Attribute(Attribute { scope, name })),
    ]
}

fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-zA-Z0-9_.:-]{0,10}",
        "\\PC{0,6}",
        "[\\x00-\\x1f\"\\\\]{0,4}"
    ]
}

fn duration() -> impl Strategy<Value = Literal> {
    prop_oneof![
        any::<u64>(),
        (0u64..10_000).prop_map(|n| n * 1_000_000),
        (0u64..100).prop_map(|n| n * 60_000_000_000)
    ]
    .prop_map(|n| Literal::Duration(DurationNanos(n)))
}

fn number() -> impl Strategy<Value = Literal> {
    prop_oneof![
        any::<i64>().prop_map(Literal::Int),
        any::<f64>()
            .prop_filter("finite", |x| x.is_finite())
            .prop_map(Literal::Float),
        duration(),
    ]
}

fn ordering_op() -> impl Strategy<Value = CompareOp> {
    prop_oneof![
        Just(CompareOp::Eq),
        Just(CompareOp::Ne),
        Just(CompareOp::Gt),
        Just(CompareOp::Ge),
        Just(CompareOp::Lt),
        Just(CompareOp::Le)
    ]
}

fn equality_op() -> impl Strategy<Value = CompareOp> {
    prop_oneof![Just(CompareOp::Eq), Just(CompareOp::Ne)]
}

/// A well-typed comparison for the given field.
fn comparison() -> impl Strategy<Value = Comparison> {
    let regex = (
        prop_oneof![Just(CompareOp::Match), Just(CompareOp::NotMatch)],
        "[a-z.]{0,5}(\\.\\*)?",
    )
        .prop_map(|(op, source)| (op, Literal::String(source)));
    field()
        .prop_flat_map(move |field| {
            let op_value: BoxedStrategy<(CompareOp, Literal)> = match &field {
                Field::Intrinsic(Intrinsic::Status) => (
                    equality_op(),
                    prop_oneof![
                        Just(StatusCode::Ok),
                        Just(StatusCode::Error),
                        Just(StatusCode::Unset)
                    ]
                    .prop_map(Literal::Status),
                )
                    .boxed(),
                Field::Intrinsic(Intrinsic::Kind) => (
                    equality_op(),
                    prop_oneof![
                        Just(SpanKind::Server),
                        Just(SpanKind::Client),
                        Just(SpanKind::Internal),
                        Just(SpanKind::Producer),
                        Just(SpanKind::Consumer),
                        Just(SpanKind::Unspecified)
                    ]
                    .prop_map(Literal::Kind),
                )
                    .boxed(),
                Field::Intrinsic(Intrinsic::Duration | Intrinsic::TraceDuration) => {
                    (ordering_op(), duration()).boxed()
                }
                Field::Intrinsic(_) => prop_oneof![
                    (ordering_op(), text().prop_map(Literal::String)),
                    regex.clone(),
                ]
                .boxed(),
                Field::Attribute(_) => prop_oneof![
                    (ordering_op(), text().prop_map(Literal::String)),
                    (ordering_op(), number()),
                    (equality_op(), any::<bool>().prop_map(Literal::Bool)),
                    (equality_op(), Just(Literal::Nil)),
                    regex.clone(),
                ]
                .boxed(),
            };
            (Just(field), op_value)
        })
        .prop_map(|(field, (op, value))| {
            let pattern = match (&value, op) {
                (Literal::String(s), CompareOp::Match | CompareOp::NotMatch) => {
                    Some(crate::pattern::compile_pattern(s).expect("generated regexes compile"))
                }
                _ => None,
            };
            Comparison {
                field,
                op,
                value,
                pattern,
            }
        })
}

fn condition() -> impl Strategy<Value = FieldExpr> {
    let leaf = prop_oneof![
        4 => comparison().prop_map(FieldExpr::Compare),
        1 => any::<bool>().prop_map(FieldExpr::Bool),
    ];
    leaf.prop_recursive(4, 16, 2, |inner| {
        prop_oneof![
            inner.clone().prop_map(|e| FieldExpr::Not(Box::new(e))),
            (inner.clone(), inner.clone())
                .prop_map(|(l, r)| FieldExpr::And(Box::new(l), Box::new(r))),
            (inner.clone(), inner).prop_map(|(l, r)| FieldExpr::Or(Box::new(l), Box::new(r))),
        ]
    })
}

fn filter() -> impl Strategy<Value = SpansetFilter> {
    proptest::option::weighted(0.8, condition()).prop_map(|condition| SpansetFilter { condition })
}

fn stage() -> impl Strategy<Value = Stage> {
    let numeric_field = prop_oneof![
        Just(Field::Intrinsic(Intrinsic::Duration)),
        Just(Field::Intrinsic(Intrinsic::TraceDuration)),
        attr_name().prop_map(|name| Field::Attribute(Attribute {
            scope: AttributeScope::Span,
            name
        })),
    ];
    let aggregate = prop_oneof![
        (
            ordering_op(),
            prop_oneof![
                any::<i64>().prop_map(Literal::Int),
                (0.0f64..1e6).prop_map(Literal::Float)
            ]
        )
            .prop_map(|(op, value)| Stage::Aggregate {
                func: Aggregate::Count,
                op,
                value
            }),
        (0usize..4, numeric_field, ordering_op(), duration()).prop_map(|(f, field, op, value)| {
            let func = match f {
                0 => Aggregate::Avg(field),
                1 => Aggregate::Min(field),
                2 => Aggregate::Max(field),
                _ => Aggregate::Sum(field),
            };
            Stage::Aggregate { func, op, value }
        }),
    ];
    prop_oneof![
        filter().prop_map(Stage::Filter),
        aggregate,
        proptest::collection::vec(field(), 1..4).prop_map(Stage::Select),
    ]
}

fn spanset() -> impl Strategy<Value = SpansetExpr> {
    let op = prop_oneof![
        Just(SpansetOp::And),
        Just(SpansetOp::Or),
        Just(SpansetOp::Child),
        Just(SpansetOp::Descendant),
        Just(SpansetOp::Parent),
        Just(SpansetOp::Ancestor),
        Just(SpansetOp::Sibling),
    ];
    filter()
        .prop_map(SpansetExpr::Filter)
        .prop_recursive(4, 12, 2, move |inner| {
            prop_oneof![
                (op.clone(), inner.clone(), inner.clone()).prop_map(|(op, l, r)| {
                    SpansetExpr::Binary {
                        op,
                        lhs: Box::new(l),
                        rhs: Box::new(r),
                    }
                }),
                // The parser flattens a pipeline's pipeline input; generate only flat ones.
                (inner, proptest::collection::vec(stage(), 1..3)).prop_map(
                    |(input, mut stages)| {
                        match input {
                            SpansetExpr::Pipeline {
                                input,
                                stages: mut first,
                            } => {
                                first.append(&mut stages);
                                SpansetExpr::Pipeline {
                                    input,
                                    stages: first,
                                }
                            }
                            other => SpansetExpr::Pipeline {
                                input: Box::new(other),
                                stages,
                            },
                        }
                    }
                ),
            ]
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn display_reparses_to_the_same_tree(expr in spanset()) {
        let query = Query { expr };
        let printed = query.to_string();
        let reparsed = parse(&printed);
        prop_assert!(reparsed.is_ok(), "{printed:?}: {:?}", reparsed.err());
        prop_assert_eq!(reparsed.unwrap(), query, "{}", printed);
    }

    #[test]
    fn arbitrary_text_never_panics(text in "\\PC{0,80}") {
        if let Ok(query) = parse(&text) {
            prop_assert_eq!(parse(&query.to_string()).ok(), Some(query));
        }
    }

    #[test]
    fn query_shaped_text_never_panics(
        parts in proptest::collection::vec(
            prop_oneof![
                Just("{"), Just("}"), Just("("), Just(")"), Just("&&"), Just("||"), Just("!"),
                Just("="), Just("!="), Just(">"), Just(">>"), Just("<<"), Just("~"), Just("=~"),
                Just("|"), Just("name"), Just("span:kind"), Just("status"), Just("error"),
                Just("duration"), Just("1.5s"), Just("-3"), Just("0.5"), Just("\"x\""),
                Just("span.a.b"), Just(".x"), Just("count()"), Just("avg("), Just("select("),
                Just(","), Just("nil"), Just("true"), Just("`r`"), Just("server"), Just(" "),
            ],
            0..24,
        )
    ) {
        let text = parts.concat();
        if let Ok(query) = parse(&text) {
            prop_assert_eq!(parse(&query.to_string()).ok(), Some(query));
        } else if let Err(e) = parse(&text) {
            prop_assert!(e.position <= text.len());
        }
    }
}
