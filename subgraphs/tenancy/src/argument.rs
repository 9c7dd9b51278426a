//! Input-object arguments whose shape errors are the client's fault.
//!
//! async-graphql checks most of a request before running it, and the kit
//! codes those errors `BAD_USER_INPUT`. But a variable that does not fit an
//! input object at all (a string where `{title, done}` belongs, say) is only
//! refused when the field runs, so the error has a path and no code, and the
//! kit would report it as `INTERNAL`. Taking such arguments as [`Argument`] moves
//! the refusal into the resolver, where it becomes `BAD_USER_INPUT` like any
//! other bad input. The schema is unchanged: an `Argument<T>` is a `T` there.

use std::borrow::Cow;

use crate::error::{Error, Result};
use async_graphql::registry::Registry;
use async_graphql::{InputType, InputValueResult, Pos, Value};

/// An argument of type `T`, parsed or with the reason it could not be.
pub struct Argument<T>(std::result::Result<T, String>);

impl<T> Argument<T> {
    /// The parsed value, or `BAD_USER_INPUT` with async-graphql's reason.
    pub fn into_inner(self) -> Result<T> {
        self.0.map_err(Error::BadUserInput)
    }
}

impl<T: InputType> InputType for Argument<T> {
    type RawValueType = T::RawValueType;

    fn type_name() -> Cow<'static, str> {
        T::type_name()
    }

    fn qualified_type_name() -> String {
        T::qualified_type_name()
    }

    fn create_type_info(registry: &mut Registry) -> String {
        T::create_type_info(registry)
    }

    fn parse(value: Option<Value>) -> InputValueResult<Self> {
        let parsed =
            T::parse(value).map_err(|error| error.into_server_error(Pos::default()).message);
        Ok(Self(parsed))
    }

    fn to_value(&self) -> Value {
        self.0.as_ref().map(T::to_value).unwrap_or(Value::Null)
    }

    fn federation_fields() -> Option<String> {
        T::federation_fields()
    }

    fn as_raw_value(&self) -> Option<&Self::RawValueType> {
        self.0.as_ref().ok().and_then(T::as_raw_value)
    }
}
