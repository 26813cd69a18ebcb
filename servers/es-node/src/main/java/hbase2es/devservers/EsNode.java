package hbase2es.devservers;

import org.elasticsearch.common.logging.LogConfigurator;
import org.elasticsearch.common.settings.Settings;
import org.elasticsearch.env.Environment;
import org.elasticsearch.node.ClasspathNode;
import org.elasticsearch.node.InternalSettingsPreparer;
import org.elasticsearch.node.Node;
import org.elasticsearch.transport.netty4.Netty4Plugin;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.Map;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;

/**
 * Runs one Elasticsearch 8/9 node from Maven Central jars, for hbase2es's tests.
 *
 * Arguments are node settings, key=value (path.home, path.data, cluster.name, http.port, ...).
 * Plugins: transport-netty4 (HTTP and transport), RootPlugin (GET /) and IngestStandInPlugin
 * (the set and fail processors). Every other module of a real distribution is missing, as
 * Central does not carry them: no painless, no other ingest processors, no _delete_by_query /
 * _reindex, no data streams, no analysis-common tokenizers, no x-pack (so no security, and
 * no licence). There is no security manager (8.x) and no
 * entitlements (9.x) either: those belong to the real launcher. Runs until SIGTERM.
 */
public final class EsNode {

    public static void main(String[] args) throws Exception {
        Settings.Builder builder = Settings.builder();
        for (String arg : args) {
            int eq = arg.indexOf('=');
            if (eq < 1) {
                System.err.println("expected key=value, got: " + arg);
                System.exit(2);
            }
            builder.put(arg.substring(0, eq), arg.substring(eq + 1));
        }
        Settings settings = builder.build();
        // Without a log4j set-up the node's first log call fails.
        LogConfigurator.configureWithoutConfig(settings);
        Path config = Path.of(settings.get("path.home")).resolve("config");
        Files.createDirectories(config);
        String nodeName = settings.get("node.name", "node-1");
        Environment env = InternalSettingsPreparer.prepareEnvironment(settings, Map.of(), config, () -> nodeName);

        Node node = new ClasspathNode(env, List.of(Netty4Plugin.class, RootPlugin.class, IngestStandInPlugin.class));
        CountDownLatch stopped = new CountDownLatch(1);
        Runtime.getRuntime().addShutdownHook(new Thread(() -> {
            try {
                node.close();
                node.awaitClose(20, TimeUnit.SECONDS);
            } catch (Exception e) {
                e.printStackTrace();
            } finally {
                stopped.countDown();
            }
        }, "hbase2es-es-stop"));
        node.start();
        System.out.println("hbase2es: node started");
        stopped.await();
    }
}
