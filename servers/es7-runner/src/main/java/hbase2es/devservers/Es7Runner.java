package hbase2es.devservers;

import org.codelibs.elasticsearch.runner.ElasticsearchClusterRunner;

/**
 * codelibs' Elasticsearch 7 cluster runner with the ingest role on its nodes.
 *
 * The runner gives a node the roles [master, data] unless the settings it builds itself name
 * node.roles; elasticsearch.yml cannot change that, as those settings override the file. So
 * ingest pipelines (IngestCommonPlugin is loaded) had no node to run on. This main hands the
 * runner the roles through its onBuild hook; the arguments are the runner's own.
 */
public final class Es7Runner {

    public static void main(String[] args) throws Exception {
        ElasticsearchClusterRunner runner = new ElasticsearchClusterRunner();
        Runtime.getRuntime().addShutdownHook(new Thread(() -> {
            try {
                runner.close();
            } catch (Exception e) {
                e.printStackTrace();
            }
        }, "hbase2es-es7-stop"));
        runner.onBuild((index, settings) -> settings.putList("node.roles", "master", "data", "ingest"));
        runner.build(args);
        while (!runner.isClosed()) {
            Thread.sleep(5000);
        }
    }
}
