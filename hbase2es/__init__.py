"""hbase2es: export HBase rows into Elasticsearch in parallel time slices."""

__version__ = "0.1.0"
