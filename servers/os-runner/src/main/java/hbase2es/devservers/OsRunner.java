package hbase2es.devservers;

import org.codelibs.opensearch.runner.OpenSearchRunner;

/**
 * codelibs' OpenSearch 2/3 runner with the ingest role on its nodes.
 *
 * The runner gives a node the roles [cluster_manager, data] unless the settings it builds
 * itself name node.roles; opensearch.yml cannot change that, as those settings override the
 * file. So ingest pipelines (the ingest-common module is loaded) had no node to run on.
 * This main hands the runner the roles through its onBuild hook; the arguments are the
 * runner's own.
 */
public final class OsRunner {

    public static void main(String[] args) throws Exception {
        OpenSearchRunner runner = new OpenSearchRunner();
        Runtime.getRuntime().addShutdownHook(new Thread(() -> {
            try {
                runner.close();
            } catch (Exception e) {
                e.printStackTrace();
            }
        }, "hbase2es-os-stop"));
        runner.onBuild((index, settings) -> settings.putList("node.roles", "cluster_manager", "data", "ingest"));
        runner.build(args);
        while (!runner.isClosed()) {
            Thread.sleep(5000);
        }
    }
}
