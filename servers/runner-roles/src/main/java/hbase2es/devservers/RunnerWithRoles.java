package hbase2es.devservers;

import java.io.Closeable;
import java.lang.reflect.Method;
import java.lang.reflect.Proxy;
import java.util.Arrays;

/**
 * Starts one of codelibs' runners (the Elasticsearch 7 cluster runner, the OpenSearch 2/3
 * runner) with the node roles we choose, to give its nodes the ingest role.
 *
 * A runner sets node.roles to [master|cluster_manager, data] unless the settings it builds
 * itself name node.roles, and those override elasticsearch.yml / opensearch.yml; no flag sets
 * them. Its onBuild hook can. The runners share no types (other jars, other packages), so
 * one source serves all three through reflection.
 *
 * Arguments: the runner's class, the roles (comma-separated), then the runner's own arguments.
 */
public final class RunnerWithRoles {

    public static void main(String[] args) throws Exception {
        Class<?> type = Class.forName(args[0]);
        String[] roles = args[1].split(",");
        Object runner = type.getConstructor().newInstance();
        Method onBuild = Arrays.stream(type.getMethods())
            .filter(m -> m.getName().equals("onBuild")).findFirst().orElseThrow();
        Class<?> hookType = onBuild.getParameterTypes()[0];
        Object hook = Proxy.newProxyInstance(hookType.getClassLoader(), new Class<?>[] {hookType},
            (proxy, method, hookArgs) -> {
                switch (method.getName()) {
                    case "build":  // (int node index, Settings.Builder settings)
                        Object settings = hookArgs[1];
                        settings.getClass().getMethod("putList", String.class, String[].class)
                            .invoke(settings, "node.roles", roles);
                        return null;
                    case "hashCode":
                        return System.identityHashCode(proxy);
                    case "equals":
                        return proxy == hookArgs[0];
                    case "toString":
                        return "hbase2es node roles " + String.join(",", roles);
                    default:
                        throw new UnsupportedOperationException(method.getName());
                }
            });
        onBuild.invoke(runner, hook);
        Runtime.getRuntime().addShutdownHook(new Thread(() -> {
            try {
                ((Closeable) runner).close();
            } catch (Exception e) {
                e.printStackTrace();
            }
        }, "hbase2es-runner-stop"));
        type.getMethod("build", String[].class).invoke(runner, (Object) Arrays.copyOfRange(args, 2, args.length));
        Method isClosed = type.getMethod("isClosed");
        while (!(Boolean) isClosed.invoke(runner)) {
            Thread.sleep(5000);
        }
    }
}
