//! Result-set messages: the column-count header, column definitions, text and binary rows,
//! the prepare-OK and the LOCAL INFILE request.
//!
//! Follows "Text Resultset", "Binary Protocol Resultset" and "COM_STMT_PREPARE Response" in the
//! MySQL protocol documentation (`dev.mysql.com/doc/dev/mysql-server/latest/
//! page_protocol_com_query_response_text_resultset.html`). The terminators between these packets
//! (EOF or OK) and telling a row from a terminator by its first byte belong to `response`.
//!
//! ferry relays rows untouched; these parsers exist for what it must read itself (session-state
//! queries during migration, prepared-statement bookkeeping) and for tests and fuzzing.

use bytes::BufMut;

use crate::wire::value::{bitmap_is_null, put_null_bitmap, take_null_bitmap};
use crate::wire::{put_lenenc_bytes, put_lenenc_int, Capabilities, ColumnType, ParseBuf};
use crate::wire::{Value, ValueType};
use crate::DecodeError;

/// Column flags (`*_FLAG` in `mysql_com.h`) from a column definition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct ColumnFlags(pub u16);

impl ColumnFlags {
    /// NOT_NULL_FLAG
    pub const NOT_NULL: ColumnFlags = ColumnFlags(1);
    /// PRI_KEY_FLAG
    pub const PRI_KEY: ColumnFlags = ColumnFlags(1 << 1);
    /// UNIQUE_KEY_FLAG
    pub const UNIQUE_KEY: ColumnFlags = ColumnFlags(1 << 2);
    /// MULTIPLE_KEY_FLAG
    pub const MULTIPLE_KEY: ColumnFlags = ColumnFlags(1 << 3);
    /// BLOB_FLAG
    pub const BLOB: ColumnFlags = ColumnFlags(1 << 4);
    /// UNSIGNED_FLAG: integers of this column are unsigned (this picks the binary encoding).
    pub const UNSIGNED: ColumnFlags = ColumnFlags(1 << 5);
    /// ZEROFILL_FLAG
    pub const ZEROFILL: ColumnFlags = ColumnFlags(1 << 6);
    /// BINARY_FLAG
    pub const BINARY: ColumnFlags = ColumnFlags(1 << 7);
    /// ENUM_FLAG
    pub const ENUM: ColumnFlags = ColumnFlags(1 << 8);
    /// AUTO_INCREMENT_FLAG
    pub const AUTO_INCREMENT: ColumnFlags = ColumnFlags(1 << 9);
    /// TIMESTAMP_FLAG
    pub const TIMESTAMP: ColumnFlags = ColumnFlags(1 << 10);
    /// SET_FLAG
    pub const SET: ColumnFlags = ColumnFlags(1 << 11);
    /// NO_DEFAULT_VALUE_FLAG
    pub const NO_DEFAULT_VALUE: ColumnFlags = ColumnFlags(1 << 12);
    /// ON_UPDATE_NOW_FLAG
    pub const ON_UPDATE_NOW: ColumnFlags = ColumnFlags(1 << 13);
    /// NUM_FLAG
    pub const NUM: ColumnFlags = ColumnFlags(1 << 15);

    /// True when every flag of `other` is set.
    pub fn contains(self, other: ColumnFlags) -> bool {
        self.0 & other.0 == other.0
    }
}

/// `Protocol::ColumnDefinition41`: one column of a result set, or one parameter of a prepared
/// statement. Names borrow from the payload.
///
/// MariaDB's extended metadata (`MARIADB_CLIENT_EXTENDED_METADATA`) inserts a block that this
/// parser does not read; ferry does not negotiate it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ColumnDefinition41<'a> {
    /// Catalog, always `def`.
    pub catalog: &'a [u8],
    /// Schema.
    pub schema: &'a [u8],
    /// Table alias.
    pub table: &'a [u8],
    /// Table name.
    pub org_table: &'a [u8],
    /// Column alias.
    pub name: &'a [u8],
    /// Column name.
    pub org_name: &'a [u8],
    /// Collation id of the column (binary: 63).
    pub collation: u16,
    /// Maximum display length.
    pub column_length: u32,
    /// Column type.
    pub column_type: ColumnType,
    /// Flags.
    pub flags: ColumnFlags,
    /// Decimal digits shown (0x00 for integers and static strings, 0x1F for dynamic strings and
    /// floats, 0x00..=0x51 for decimals).
    pub decimals: u8,
    /// The default value, only in COM_FIELD_LIST responses: `Some(None)` is a NULL default.
    pub default_value: Option<Option<&'a [u8]>>,
}

/// Length of the fixed block after the names, as servers send it.
const FIXED_LEN: u8 = 0x0C;

impl<'a> ColumnDefinition41<'a> {
    /// Parses a column definition payload.
    pub fn parse(payload: &'a [u8]) -> Result<Self, DecodeError> {
        let mut buf = ParseBuf::new(payload);
        let catalog = buf.lenenc_bytes("catalog")?;
        let schema = buf.lenenc_bytes("schema")?;
        let table = buf.lenenc_bytes("table")?;
        let org_table = buf.lenenc_bytes("org_table")?;
        let name = buf.lenenc_bytes("name")?;
        let org_name = buf.lenenc_bytes("org_name")?;
        // The block announces its length; read what we know and skip any future extension.
        let fixed = buf.lenenc_bytes("column definition fixed fields")?;
        if fixed.len() < usize::from(FIXED_LEN) {
            return Err(DecodeError::Malformed {
                what: "column definition fixed fields length",
            });
        }
        let mut f = ParseBuf::new(fixed);
        let collation = f.u16("collation")?;
        let column_length = f.u32("column length")?;
        let column_type = ColumnType::from_u8(f.u8("column type")?);
        let flags = ColumnFlags(f.u16("column flags")?);
        let decimals = f.u8("decimals")?;
        let default_value = match buf.peek_u8() {
            None => None,
            Some(0xFB) => {
                buf.u8("default value")?;
                Some(None)
            }
            Some(_) => Some(Some(buf.lenenc_bytes("default value")?)),
        };
        buf.finish("column definition")?;
        Ok(Self {
            catalog,
            schema,
            table,
            org_table,
            name,
            org_name,
            collation,
            column_length,
            column_type,
            flags,
            decimals,
            default_value,
        })
    }

    /// Writes the column definition payload.
    pub fn encode(&self, out: &mut impl BufMut) {
        for s in [
            self.catalog,
            self.schema,
            self.table,
            self.org_table,
            self.name,
            self.org_name,
        ] {
            put_lenenc_bytes(out, s);
        }
        out.put_u8(FIXED_LEN);
        out.put_u16_le(self.collation);
        out.put_u32_le(self.column_length);
        out.put_u8(self.column_type.to_u8());
        out.put_u16_le(self.flags.0);
        out.put_u8(self.decimals);
        out.put_u16_le(0); // filler
        match self.default_value {
            None => {}
            Some(None) => out.put_u8(0xFB),
            Some(Some(v)) => put_lenenc_bytes(out, v),
        }
    }

    /// How values of this column are encoded in binary rows.
    pub fn value_type(&self) -> ValueType {
        ValueType::new(self.column_type, self.flags.contains(ColumnFlags::UNSIGNED))
    }
}

/// The first packet of a result set: the column count, and whether column definitions follow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResultSetHeader {
    /// Number of columns (never 0: a 0x00 first byte is an OK packet).
    pub column_count: u64,
    /// False when the server skipped the column definitions (`RESULTSET_METADATA_NONE`).
    pub metadata_follows: bool,
}

impl ResultSetHeader {
    /// Parses the header; the metadata byte is there under `CLIENT_OPTIONAL_RESULTSET_METADATA`.
    pub fn parse(payload: &[u8], caps: Capabilities) -> Result<Self, DecodeError> {
        Self::parse_with_metadata_byte(
            payload,
            caps.contains(Capabilities::OPTIONAL_RESULTSET_METADATA),
        )
    }

    /// Parses the header with the metadata byte present or not. MariaDB uses the same byte for
    /// binary result sets under `MARIADB_CLIENT_CACHE_METADATA`, an extended capability.
    pub fn parse_with_metadata_byte(
        payload: &[u8],
        metadata_byte: bool,
    ) -> Result<Self, DecodeError> {
        let mut buf = ParseBuf::new(payload);
        let column_count = buf.lenenc_int("column count")?;
        if column_count == 0 {
            return Err(DecodeError::Malformed {
                what: "column count",
            });
        }
        let metadata_follows = if metadata_byte {
            parse_metadata_byte(&mut buf)?
        } else {
            true
        };
        buf.finish("result set header")?;
        Ok(Self {
            column_count,
            metadata_follows,
        })
    }

    /// Writes the header; the metadata byte under `CLIENT_OPTIONAL_RESULTSET_METADATA`.
    pub fn encode(&self, caps: Capabilities, out: &mut impl BufMut) {
        self.encode_with_metadata_byte(
            caps.contains(Capabilities::OPTIONAL_RESULTSET_METADATA),
            out,
        );
    }

    /// Writes the header with or without the metadata byte.
    pub fn encode_with_metadata_byte(&self, metadata_byte: bool, out: &mut impl BufMut) {
        put_lenenc_int(out, self.column_count);
        if metadata_byte {
            out.put_u8(u8::from(self.metadata_follows));
        }
    }
}

/// `enum_resultset_metadata`: 0 none, 1 full.
fn parse_metadata_byte(buf: &mut ParseBuf<'_>) -> Result<bool, DecodeError> {
    match buf.u8("metadata follows")? {
        0 => Ok(false),
        1 => Ok(true),
        _ => Err(DecodeError::Malformed {
            what: "metadata follows",
        }),
    }
}

/// A text-protocol row: one `string<lenenc>` per column, `0xFB` for NULL. Iterating yields the
/// cells lazily; after an error it stops.
#[derive(Debug, Clone)]
pub struct TextRow<'a> {
    buf: ParseBuf<'a>,
}

impl<'a> TextRow<'a> {
    /// A lazy reader over a row payload.
    pub fn new(payload: &'a [u8]) -> Self {
        Self {
            buf: ParseBuf::new(payload),
        }
    }

    /// Reads exactly `column_count` cells and nothing more.
    pub fn parse(
        payload: &'a [u8],
        column_count: usize,
    ) -> Result<Vec<Option<&'a [u8]>>, DecodeError> {
        // Each cell takes at least one byte, so the packet bounds the allocation.
        let mut cells = Vec::with_capacity(column_count.min(payload.len()));
        let mut row = Self::new(payload);
        for _ in 0..column_count {
            match row.next() {
                Some(cell) => cells.push(cell?),
                None => return Err(DecodeError::UnexpectedEnd { what: "text row" }),
            }
        }
        row.buf.finish("text row")?;
        Ok(cells)
    }

    /// Writes a row.
    pub fn encode(cells: &[Option<&[u8]>], out: &mut impl BufMut) {
        for cell in cells {
            match cell {
                None => out.put_u8(0xFB),
                Some(v) => put_lenenc_bytes(out, v),
            }
        }
    }
}

impl<'a> Iterator for TextRow<'a> {
    type Item = Result<Option<&'a [u8]>, DecodeError>;

    fn next(&mut self) -> Option<Self::Item> {
        let cell = match self.buf.peek_u8()? {
            0xFB => self.buf.take(1, "text row NULL").map(|_| None),
            _ => self.buf.lenenc_bytes("text row cell").map(Some),
        };
        if cell.is_err() {
            self.buf = ParseBuf::new(&[]);
        }
        Some(cell)
    }
}

/// A binary-protocol row: `0x00`, a null bitmap offset by two bits, then the non-NULL values
/// encoded by their column types.
#[derive(Debug, Clone, PartialEq)]
pub struct BinaryRow<'a> {
    /// One value per column; [`Value::Null`] for NULL.
    pub values: Vec<Value<'a>>,
}

/// Bit offset of the first column in a binary row's null bitmap.
const ROW_BITMAP_OFFSET: usize = 2;

impl<'a> BinaryRow<'a> {
    /// Parses a row whose columns have the given types (from the column definitions).
    pub fn parse(payload: &'a [u8], types: &[ValueType]) -> Result<Self, DecodeError> {
        let mut buf = ParseBuf::new(payload);
        if buf.u8("binary row header")? != 0x00 {
            return Err(DecodeError::Malformed {
                what: "binary row header",
            });
        }
        let bitmap = take_null_bitmap(&mut buf, types.len(), ROW_BITMAP_OFFSET)?;
        let values = types
            .iter()
            .enumerate()
            .map(|(i, ty)| {
                if bitmap_is_null(bitmap, i, ROW_BITMAP_OFFSET) {
                    Ok(Value::Null)
                } else {
                    Value::parse(&mut buf, *ty)
                }
            })
            .collect::<Result<Vec<_>, _>>()?;
        buf.finish("binary row")?;
        Ok(Self { values })
    }

    /// Parses a row described by its column definitions.
    pub fn parse_with_columns(
        payload: &'a [u8],
        columns: &[ColumnDefinition41<'_>],
    ) -> Result<Self, DecodeError> {
        let types: Vec<ValueType> = columns.iter().map(|c| c.value_type()).collect();
        Self::parse(payload, &types)
    }

    /// Writes the row.
    pub fn encode(&self, out: &mut impl BufMut) {
        out.put_u8(0x00);
        put_null_bitmap(out, &self.values, ROW_BITMAP_OFFSET);
        for v in &self.values {
            v.encode(out);
        }
    }
}

/// `COM_STMT_PREPARE_OK`: the statement id and how many column and parameter definitions follow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PrepareOk {
    /// Statement id for later COM_STMT_* commands.
    pub statement_id: u32,
    /// Number of result columns (their definitions follow the parameters').
    pub num_columns: u16,
    /// Number of parameters (their definitions follow this packet).
    pub num_params: u16,
    /// Warning count; absent in the short 10-byte form old servers send.
    pub warning_count: Option<u16>,
    /// False when the server skipped the definitions (`CLIENT_OPTIONAL_RESULTSET_METADATA`, only
    /// with a warning count).
    pub metadata_follows: bool,
}

impl PrepareOk {
    /// Parses a prepare-OK payload.
    pub fn parse(payload: &[u8], caps: Capabilities) -> Result<Self, DecodeError> {
        let mut buf = ParseBuf::new(payload);
        if buf.u8("prepare OK status")? != 0x00 {
            return Err(DecodeError::Malformed {
                what: "prepare OK status",
            });
        }
        let statement_id = buf.u32("statement id")?;
        let num_columns = buf.u16("number of columns")?;
        let num_params = buf.u16("number of parameters")?;
        buf.u8("prepare OK filler")?;
        let mut ok = Self {
            statement_id,
            num_columns,
            num_params,
            warning_count: None,
            metadata_follows: true,
        };
        if !buf.is_empty() {
            ok.warning_count = Some(buf.u16("warning count")?);
            if caps.contains(Capabilities::OPTIONAL_RESULTSET_METADATA) && !buf.is_empty() {
                ok.metadata_follows = parse_metadata_byte(&mut buf)?;
            }
        }
        buf.finish("prepare OK")?;
        Ok(ok)
    }

    /// Writes a prepare-OK payload.
    pub fn encode(&self, caps: Capabilities, out: &mut impl BufMut) {
        out.put_u8(0x00);
        out.put_u32_le(self.statement_id);
        out.put_u16_le(self.num_columns);
        out.put_u16_le(self.num_params);
        out.put_u8(0);
        if let Some(w) = self.warning_count {
            out.put_u16_le(w);
            if caps.contains(Capabilities::OPTIONAL_RESULTSET_METADATA) {
                out.put_u8(u8::from(self.metadata_follows));
            }
        }
    }
}

/// The server asks the client to send a local file (`LOAD DATA LOCAL INFILE`): `0xFB` + name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LocalInfileRequest<'a> {
    /// The file name the statement named.
    pub filename: &'a [u8],
}

impl<'a> LocalInfileRequest<'a> {
    /// The packet's first byte.
    pub const HEADER: u8 = 0xFB;

    /// Parses the request payload.
    pub fn parse(payload: &'a [u8]) -> Result<Self, DecodeError> {
        let mut buf = ParseBuf::new(payload);
        if buf.u8("LOCAL INFILE header")? != Self::HEADER {
            return Err(DecodeError::Malformed {
                what: "LOCAL INFILE header",
            });
        }
        Ok(Self {
            filename: buf.take_rest(),
        })
    }

    /// Writes the request payload.
    pub fn encode(&self, out: &mut impl BufMut) {
        out.put_u8(Self::HEADER);
        out.put_slice(self.filename);
    }
}

#[cfg(test)]
mod tests;
