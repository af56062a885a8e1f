//! The PostgreSQL store. Binary COPY flushes, the shard registry and migration come with
//! the PostgreSQL issue; until then opening one says so plainly.

use super::{FlushWrite, Store, StoreAddress};
use crate::error::{Error, Result};
use crate::schema::TableSchema;
use crate::types::Value;

#[derive(Debug)]
pub struct PostgresStore {
    address: StoreAddress,
}

impl PostgresStore {
    pub fn open(address: StoreAddress) -> Result<PostgresStore> {
        Err(Error::Unsupported(format!(
            "store {}: PostgreSQL is not supported yet in this build; use the embedded SQLite store (sqlite:PATH)",
            address.redacted()
        )))
    }
}

impl Store for PostgresStore {
    fn address(&self) -> &StoreAddress {
        &self.address
    }
    fn prepare(&mut self, _tables: &[TableSchema]) -> Result<()> {
        Err(Error::Unsupported("PostgreSQL is not supported yet".into()))
    }
    fn write(&mut self, _flush: &FlushWrite<'_>) -> Result<()> {
        Err(Error::Unsupported("PostgreSQL is not supported yet".into()))
    }
    fn scan(&mut self, _t: &TableSchema, _s: i64, _e: i64, _eq: &[(usize, Value)]) -> Result<Vec<Vec<Value>>> {
        Err(Error::Unsupported("PostgreSQL is not supported yet".into()))
    }
}
