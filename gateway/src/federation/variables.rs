//! Checks client variable values against the operation's variable types
//! before anything is sent: coercing variables is the gateway's job, and a
//! subgraph refusing a bad value would otherwise look like a server fault.

use hive_router_query_planner::{
    ast::operation::OperationDefinition,
    state::supergraph_state::{SupergraphDefinition, TypeNode},
};
use serde_json::{Map, Value};

use super::supergraph::Supergraph;
use crate::error::GatewayError;

/// Refuses variables that are missing, of the wrong type, carry unknown
/// input fields or lack required ones, naming the variable at fault.
pub fn check_variables(
    supergraph: &Supergraph,
    operation: &OperationDefinition,
    variables: &Map<String, Value>,
) -> Result<(), GatewayError> {
    for definition in operation.variable_definitions.iter().flatten() {
        let location = format!("${}", definition.name);
        match variables.get(&definition.name) {
            None | Some(Value::Null)
                if definition.variable_type.is_non_null() && definition.default_value.is_none() =>
            {
                return Err(GatewayError::BadUserInput(format!(
                    "{location} is required"
                )));
            }
            None => {}
            Some(value) => check_value(supergraph, &definition.variable_type, value, &location)?,
        }
    }
    Ok(())
}

fn check_value(
    supergraph: &Supergraph,
    expected: &TypeNode,
    value: &Value,
    location: &str,
) -> Result<(), GatewayError> {
    let mismatch = |what: &str| GatewayError::BadUserInput(format!("{location} must be {what}"));
    match expected {
        TypeNode::NonNull(inner) => {
            if value.is_null() {
                return Err(mismatch("non-null"));
            }
            check_value(supergraph, inner, value, location)
        }
        TypeNode::List(inner) => match value {
            Value::Null => Ok(()),
            Value::Array(items) => items.iter().enumerate().try_for_each(|(index, item)| {
                check_value(supergraph, inner, item, &format!("{location}[{index}]"))
            }),
            // Input coercion accepts one value where a list is expected.
            single => check_value(supergraph, inner, single, location),
        },
        TypeNode::Named(_) if value.is_null() => Ok(()),
        TypeNode::Named(name) => match name.as_str() {
            "Int" => value
                .as_i64()
                .filter(|number| i32::try_from(*number).is_ok())
                .map(|_| ())
                .ok_or_else(|| mismatch("a 32-bit integer")),
            "Float" => value
                .is_number()
                .then_some(())
                .ok_or_else(|| mismatch("a number")),
            "String" => value
                .is_string()
                .then_some(())
                .ok_or_else(|| mismatch("a string")),
            "Boolean" => value
                .is_boolean()
                .then_some(())
                .ok_or_else(|| mismatch("true or false")),
            "ID" => (value.is_string() || value.is_i64() || value.is_u64())
                .then_some(())
                .ok_or_else(|| mismatch("an id")),
            _ => match supergraph.state().definitions.get(name) {
                Some(SupergraphDefinition::Enum(enumeration)) => value
                    .as_str()
                    .filter(|text| enumeration.values.iter().any(|known| known.name == *text))
                    .map(|_| ())
                    .ok_or_else(|| mismatch(&format!("one of the {name} values"))),
                Some(SupergraphDefinition::InputObject(input)) => {
                    let Value::Object(fields) = value else {
                        return Err(mismatch(&format!("a {name} object")));
                    };
                    for (field_name, field_value) in fields {
                        let Some(field) = input.fields.get(field_name) else {
                            return Err(GatewayError::BadUserInput(format!(
                                "{location} has no field `{field_name}`"
                            )));
                        };
                        check_value(
                            supergraph,
                            &field.field_type,
                            field_value,
                            &format!("{location}.{field_name}"),
                        )?;
                    }
                    match supergraph
                        .required_input_fields(name)
                        .iter()
                        .find(|required| !fields.contains_key(*required))
                    {
                        Some(missing) => Err(GatewayError::BadUserInput(format!(
                            "{location}.{missing} is required"
                        ))),
                        None => Ok(()),
                    }
                }
                // Custom scalars accept any JSON; the subgraph parses them.
                _ => Ok(()),
            },
        },
    }
}
