// The part of HBase 2.x's Thrift2 service (THBaseService) that hbase2es reads with.
//
// Written for this project, not generated from HBase's file: only what the Thrift2 reader
// sends or receives is declared. Field ids and wire types were checked against the
// classes in hbase-thrift 2.6.1 (org.apache.hadoop.hbase.thrift2.generated); a field this
// file leaves out is skipped by the client when the server sends it, so the subset stays
// wire compatible.

namespace py hbase2es_thrift2

// Half-open [minStamp, maxStamp) in milliseconds.
struct TTimeRange {
  1: required i64 minStamp,
  2: required i64 maxStamp
}

// A whole family when qualifier is unset.
struct TColumn {
  1: required binary family,
  2: optional binary qualifier,
  3: optional i64 timestamp
}

struct TColumnValue {
  1: required binary family,
  2: required binary qualifier,
  3: required binary value,
  4: optional i64 timestamp,
  5: optional binary tags,
  6: optional byte type
}

// A missing row comes back with row unset and no column values.
struct TResult {
  1: optional binary row,
  2: required list<TColumnValue> columnValues,
  3: optional bool stale = false,
  4: optional bool partial = false
}

struct TGet {
  1: required binary row,
  2: optional list<TColumn> columns,
  3: optional i64 timestamp,
  4: optional TTimeRange timeRange,
  5: optional i32 maxVersions,
  6: optional binary filterString
}

struct TScan {
  1: optional binary startRow,
  2: optional binary stopRow,
  3: optional list<TColumn> columns,
  4: optional i32 caching,
  5: optional i32 maxVersions = 1,
  6: optional TTimeRange timeRange,
  7: optional binary filterString,
  8: optional i32 batchSize,
  12: optional bool cacheBlocks
}

struct TTableName {
  1: optional binary ns,
  2: required binary qualifier
}

struct THRegionInfo {
  1: required i64 regionId,
  2: required binary tableName,
  3: optional binary startKey,
  4: optional binary endKey,
  5: optional bool offline,
  6: optional bool split,
  7: optional i32 replicaId
}

struct TServerName {
  1: required string hostName,
  2: optional i32 port,
  3: optional i64 startCode
}

struct THRegionLocation {
  1: required TServerName serverName,
  2: required THRegionInfo regionInfo
}

exception TIOError {
  1: optional string message,
  2: optional bool canRetry
}

// Raised by the scanner calls for an id the server no longer knows (expired or closed).
exception TIllegalArgument {
  1: optional string message
}

service THBaseService {
  bool tableExists(1: TTableName tableName) throws (1: TIOError io)

  list<TResult> getMultiple(1: required binary table, 2: required list<TGet> tgets)
    throws (1: TIOError io)

  i32 openScanner(1: required binary table, 2: required TScan tscan) throws (1: TIOError io)

  list<TResult> getScannerRows(1: required i32 scannerId, 2: i32 numRows = 1)
    throws (1: TIOError io, 2: TIllegalArgument ia)

  void closeScanner(1: required i32 scannerId) throws (1: TIOError io, 2: TIllegalArgument ia)

  list<THRegionLocation> getAllRegionLocations(1: required binary table)
    throws (1: TIOError io)
}
