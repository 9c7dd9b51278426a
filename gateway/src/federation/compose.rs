//! Supergraph composition: subgraph SDLs in, a plannable supergraph SDL out.
//!
//! `graphql-composition` does the composing. Its output lacks
//! `@join__type(graph: G)` on the root types, which the planner needs to find
//! a path from `Query`/`Mutation` into a subgraph ("No paths found for
//! selection item" otherwise); [`add_root_join_types`] adds one for each graph
//! that the root fields' `@join__field(graph: G)` name.

use anyhow::{Context, anyhow};
use graphql_tools::parser::schema::{Definition, Directive, Document, TypeDefinition, Value};

/// The SDL a subgraph answered to `{ _service { sdl } }`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubgraphSchema {
    /// Name of the subgraph in the supergraph.
    pub name: String,
    /// URL of its GraphQL endpoint.
    pub url: String,
    /// Its federation SDL.
    pub sdl: String,
}

/// Composes subgraph schemas into a supergraph SDL (not yet fixed up).
pub fn compose(subgraphs: &[SubgraphSchema]) -> anyhow::Result<String> {
    let mut ingested = graphql_composition::Subgraphs::default();
    for subgraph in subgraphs {
        ingested
            .ingest_str(&subgraph.sdl, &subgraph.name, Some(&subgraph.url))
            .map_err(|error| anyhow!("subgraph {} has invalid SDL: {error:?}", subgraph.name))?;
    }

    let result = graphql_composition::compose(&mut ingested);
    for message in result.diagnostics().iter_messages() {
        tracing::debug!(target: "gateway::compose", "composition diagnostic: {message}");
    }
    let graph = result.into_result().map_err(|diagnostics| {
        let messages: Vec<&str> = diagnostics.iter_messages().collect();
        anyhow!("composition failed: {}", messages.join("; "))
    })?;
    graphql_composition::render_federated_sdl(&graph).context("rendering the supergraph SDL")
}

/// Adds `@join__type(graph: G)` to each root type for every graph `G` its
/// fields' `@join__field` directives name, unless already present.
pub fn add_root_join_types(document: &mut Document<'static, String>) {
    let root_names = root_type_names(document);
    for definition in document.definitions.iter_mut() {
        let Definition::TypeDefinition(TypeDefinition::Object(object)) = definition else {
            continue;
        };
        if !root_names.contains(&object.name) {
            continue;
        }

        let mut graphs: Vec<String> = Vec::new();
        let field_directives = object.fields.iter().flat_map(|field| &field.directives);
        for directive in field_directives.filter(|directive| directive.name == "join__field") {
            if let Some(graph) = graph_argument(directive)
                && !graphs.contains(graph)
            {
                graphs.push(graph.clone());
            }
        }

        for graph in graphs {
            let present = object.directives.iter().any(|directive| {
                directive.name == "join__type" && graph_argument(directive) == Some(&graph)
            });
            if !present {
                object.directives.push(Directive {
                    position: object.position,
                    name: "join__type".to_owned(),
                    arguments: vec![("graph".to_owned(), Value::Enum(graph))],
                });
            }
        }
    }
}

/// The `graph:` argument of a join directive.
fn graph_argument<'a>(directive: &'a Directive<'static, String>) -> Option<&'a String> {
    directive
        .arguments
        .iter()
        .find_map(|(name, value)| match value {
            Value::Enum(graph) if name == "graph" => Some(graph),
            _ => None,
        })
}

/// Names of the root operation types: from the `schema` definition when there
/// is one, else the conventional names.
fn root_type_names(document: &Document<'static, String>) -> Vec<String> {
    for definition in &document.definitions {
        if let Definition::SchemaDefinition(schema) = definition {
            return [&schema.query, &schema.mutation, &schema.subscription]
                .into_iter()
                .flatten()
                .cloned()
                .collect();
        }
    }
    ["Query", "Mutation", "Subscription"]
        .map(str::to_owned)
        .to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    const SUPERGRAPH_WITHOUT_ROOT_JOIN_TYPES: &str = r#"
        enum join__Graph { FACT @join__graph(name: "fact", url: "http://f") TENANT @join__graph(name: "tenant", url: "http://t") }
        type Query {
          me: Tenant @join__field(graph: TENANT)
          facts: [String!]! @join__field(graph: FACT)
          fact: String @join__field(graph: FACT)
        }
        type Mutation @join__type(graph: FACT) {
          createFact: String @join__field(graph: FACT)
          signup: String @join__field(graph: TENANT)
        }
        type Tenant @join__type(graph: TENANT, key: "id") { id: ID! }
    "#;

    fn join_type_graphs(document: &Document<'static, String>, type_name: &str) -> Vec<String> {
        document
            .definitions
            .iter()
            .find_map(|definition| match definition {
                Definition::TypeDefinition(TypeDefinition::Object(object))
                    if object.name == type_name =>
                {
                    Some(object)
                }
                _ => None,
            })
            .unwrap()
            .directives
            .iter()
            .filter(|directive| directive.name == "join__type")
            .filter_map(|directive| graph_argument(directive).cloned())
            .collect()
    }

    #[test]
    fn root_types_get_one_join_type_per_graph_their_fields_name() {
        let mut document =
            graphql_tools::parser::parse_schema::<String>(SUPERGRAPH_WITHOUT_ROOT_JOIN_TYPES)
                .unwrap()
                .into_static();

        add_root_join_types(&mut document);

        assert_eq!(join_type_graphs(&document, "Query"), ["TENANT", "FACT"]);
        // The existing FACT directive is kept and not repeated.
        assert_eq!(join_type_graphs(&document, "Mutation"), ["FACT", "TENANT"]);
        // Entity types are left alone.
        assert_eq!(join_type_graphs(&document, "Tenant"), ["TENANT"]);
    }
}
