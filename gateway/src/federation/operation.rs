//! Questions about a client's GraphQL document asked before planning: which
//! operation runs, whether it may run without a token, and whether it stays
//! within the depth and size limits.

use std::collections::HashMap;

use graphql_tools::parser::query::{
    Definition, Document, FragmentDefinition, OperationDefinition, Selection, SelectionSet,
};
use hive_router_query_planner::utils::parsing::safe_parse_operation_with_token_limit;

use super::introspection::introspection_kind;
use crate::error::GatewayError;

/// A parsed client document.
pub type ClientDocument = Document<'static, String>;

/// Most tokens a client document may have; parsing stops there.
pub const MAX_DOCUMENT_TOKENS: usize = 20_000;

/// Parses a client document, stopping at [`MAX_DOCUMENT_TOKENS`].
pub fn parse_client_document(query: &str) -> Result<ClientDocument, GatewayError> {
    safe_parse_operation_with_token_limit(query, MAX_DOCUMENT_TOKENS)
        .map_err(|error| GatewayError::GraphqlParseFailed(error.to_string()))
}

/// Whether running the operation needs the caller's tenant. Two kinds touch
/// no tenant's data: the signup mutation (see [`is_signup_only`]) and
/// introspection-only queries, which the gateway answers itself from the
/// schema everyone shares. Everything else, including a document that does
/// not parse, needs one.
pub fn needs_tenant(query: &str, operation_name: Option<&str>) -> bool {
    // Most operations mention neither: spare them a second parse.
    if !["signup", "__schema", "__type"]
        .iter()
        .any(|word| query.contains(word))
    {
        return true;
    }
    let Ok(document) = parse_client_document(query) else {
        return true;
    };
    !(is_signup_only(&document, operation_name)
        || introspection_kind(&document, operation_name) == Some(true))
}

/// The operation `operation_name` picks, or the only one when it is absent.
pub fn select_operation<'a>(
    document: &'a ClientDocument,
    operation_name: Option<&str>,
) -> Option<&'a OperationDefinition<'static, String>> {
    let mut operations = document
        .definitions
        .iter()
        .filter_map(|definition| match definition {
            Definition::Operation(operation) => Some(operation),
            Definition::Fragment(_) => None,
        });
    match operation_name {
        Some(wanted) => operations.find(|operation| operation_name_of(operation) == Some(wanted)),
        None => {
            let first = operations.next();
            if operations.next().is_some() {
                None
            } else {
                first
            }
        }
    }
}

fn operation_name_of<'a>(operation: &'a OperationDefinition<'static, String>) -> Option<&'a str> {
    match operation {
        OperationDefinition::SelectionSet(_) => None,
        OperationDefinition::Query(query) => query.name.as_deref(),
        OperationDefinition::Mutation(mutation) => mutation.name.as_deref(),
        OperationDefinition::Subscription(subscription) => subscription.name.as_deref(),
    }
}

fn selection_set_of<'a>(
    operation: &'a OperationDefinition<'static, String>,
) -> &'a SelectionSet<'static, String> {
    match operation {
        OperationDefinition::SelectionSet(selection_set) => selection_set,
        OperationDefinition::Query(query) => &query.selection_set,
        OperationDefinition::Mutation(mutation) => &mutation.selection_set,
        OperationDefinition::Subscription(subscription) => &subscription.selection_set,
    }
}

/// True when the operation is a mutation that selects only `signup` (and
/// perhaps `__typename`) at its root: the one operation that needs no token,
/// since it is how a tenant gets its first one.
pub fn is_signup_only(document: &ClientDocument, operation_name: Option<&str>) -> bool {
    let Some(OperationDefinition::Mutation(mutation)) = select_operation(document, operation_name)
    else {
        return false;
    };
    let mut selects_signup = false;
    for selection in &mutation.selection_set.items {
        // Fragments at the root could hide other fields; requiring plain
        // fields keeps this check obviously right.
        let Selection::Field(field) = selection else {
            return false;
        };
        match field.name.as_str() {
            "signup" => selects_signup = true,
            "__typename" => {}
            _ => return false,
        }
    }
    selects_signup
}

/// Refuses an operation nested deeper than `max_depth` or selecting more than
/// `max_fields` fields once fragments are expanded. Counting stops at the
/// limit, so a fragment bomb costs no more than an allowed operation.
pub fn check_limits(
    document: &ClientDocument,
    operation: &OperationDefinition<'static, String>,
    max_depth: usize,
    max_fields: usize,
) -> Result<(), GatewayError> {
    let fragments: HashMap<&str, &FragmentDefinition<'static, String>> = document
        .definitions
        .iter()
        .filter_map(|definition| match definition {
            Definition::Fragment(fragment) => Some((fragment.name.as_str(), fragment)),
            Definition::Operation(_) => None,
        })
        .collect();
    let mut counter = LimitCounter {
        fragments,
        max_depth,
        max_fields,
        fields: 0,
        spread_stack: Vec::new(),
    };
    counter.visit(selection_set_of(operation), 1)
}

struct LimitCounter<'a> {
    fragments: HashMap<&'a str, &'a FragmentDefinition<'static, String>>,
    max_depth: usize,
    max_fields: usize,
    fields: usize,
    /// Fragments being expanded, to stop on cycles (validation reports them).
    spread_stack: Vec<&'a str>,
}

impl<'a> LimitCounter<'a> {
    fn visit(
        &mut self,
        selection_set: &'a SelectionSet<'static, String>,
        depth: usize,
    ) -> Result<(), GatewayError> {
        for selection in &selection_set.items {
            match selection {
                Selection::Field(field) => {
                    self.fields += 1;
                    if self.fields > self.max_fields {
                        return Err(GatewayError::QueryTooComplex(self.max_fields));
                    }
                    if !field.selection_set.items.is_empty() {
                        if depth + 1 > self.max_depth {
                            return Err(GatewayError::QueryTooDeep(self.max_depth));
                        }
                        self.visit(&field.selection_set, depth + 1)?;
                    }
                }
                Selection::InlineFragment(fragment) => {
                    self.visit(&fragment.selection_set, depth)?
                }
                Selection::FragmentSpread(spread) => {
                    let name = spread.fragment_name.as_str();
                    if self.spread_stack.contains(&name) {
                        continue;
                    }
                    if let Some(fragment) = self.fragments.get(name).copied() {
                        self.spread_stack.push(name);
                        self.visit(&fragment.selection_set, depth)?;
                        self.spread_stack.pop();
                    }
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(query: &str) -> ClientDocument {
        graphql_tools::parser::parse_query::<String>(query)
            .unwrap()
            .into_static()
    }

    #[test]
    fn only_a_mutation_selecting_just_signup_is_anonymous() {
        assert!(is_signup_only(
            &parse("mutation { signup(input: {name: \"a\", services: []}) { token } }"),
            None
        ));
        assert!(is_signup_only(
            &parse(
                "mutation S { __typename signup(input: {name: \"a\", services: []}) { token } }"
            ),
            Some("S")
        ));
        assert!(!is_signup_only(
            &parse(
                "mutation { signup(input: {name: \"a\", services: []}) { token } createFact(input: {text: \"x\"}) { id } }"
            ),
            None
        ));
        assert!(!is_signup_only(&parse("query { me { id } }"), None));
        assert!(!is_signup_only(
            &parse(
                "mutation { ...F } fragment F on Mutation { signup(input: {name: \"a\", services: []}) { token } }"
            ),
            None
        ));
        assert!(!is_signup_only(
            &parse(
                "mutation A { signup(input: {name: \"a\", services: []}) { token } } query B { me { id } }"
            ),
            Some("B")
        ));
    }

    #[test]
    fn only_signup_and_introspection_run_without_a_tenant() {
        for query in [
            "mutation { signup(input: {name: \"a\", services: []}) { token } }",
            "{ __schema { types { name } } }",
            "query Q { __typename t: __type(name: \"Fact\") { name } }",
            "{ ...F } fragment F on Query { __schema { queryType { name } } }",
            "{ __typename }",
        ] {
            assert!(!needs_tenant(query, None), "{query}");
        }
        for query in [
            "{ me { name } }",
            "{ __typename me { name } }",
            "{ ...F } fragment F on Query { __type(name: \"A\") { name } me { id } }",
            "mutation { __typename }",
            "mutation { signup(input: {name: \"a\", services: []}) { token } ...M } fragment M on Mutation { __typename }",
            "query A { __typename } query B { me { id } }",
            "{ __schema {",
        ] {
            assert!(needs_tenant(query, None), "{query}");
        }
        let two = "query A { __typename } query B { me { id } }";
        assert!(!needs_tenant(two, Some("A")));
        assert!(needs_tenant(two, Some("B")));
    }

    #[test]
    fn deep_and_wide_operations_are_refused() {
        let document = parse("{ a { b { c { d } } } }");
        let operation = select_operation(&document, None).unwrap();
        assert!(check_limits(&document, operation, 4, 100).is_ok());
        assert!(matches!(
            check_limits(&document, operation, 3, 100),
            Err(GatewayError::QueryTooDeep(3))
        ));

        let bomb = parse("{ ...A ...A } fragment A on Query { x y z }");
        let operation = select_operation(&bomb, None).unwrap();
        assert!(matches!(
            check_limits(&bomb, operation, 10, 5),
            Err(GatewayError::QueryTooComplex(5))
        ));
    }
}
