// The Thrift1 TScan as HBase 2's Thrift1 server knows it. happybase's bundled IDL stops
// at field 9; field 10 (cacheBlocks) lets an export keep its blocks out of the region
// servers' block cache. A server that does not know a field skips it.
struct TScan {
  1: optional binary startRow,
  2: optional binary stopRow,
  3: optional i64 timestamp,
  4: optional list<binary> columns,
  5: optional i32 caching,
  6: optional binary filterString,
  7: optional i32 batchSize,
  8: optional bool sortColumns,
  9: optional bool reversed,
  10: optional bool cacheBlocks
}
