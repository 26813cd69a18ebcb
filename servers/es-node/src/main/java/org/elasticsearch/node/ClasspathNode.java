package org.elasticsearch.node;

import org.elasticsearch.cluster.service.ClusterService;
import org.elasticsearch.env.Environment;
import org.elasticsearch.plugins.ClasspathPluginsService;
import org.elasticsearch.plugins.Plugin;
import org.elasticsearch.plugins.PluginsLoader;
import org.elasticsearch.plugins.PluginsService;

import java.util.Collection;

/**
 * An Elasticsearch node whose plugins are classes on the classpath rather than bundles under
 * modules/ and plugins/ (Maven Central carries jars, not a distribution).
 *
 * It lives in this package because the hooks it needs (NodeConstruction, NodeServiceProvider
 * and the Node(NodeConstruction) constructor) are package-private. They are the same in 8.19
 * and 9.2; other minors move them, so a new minor may need its own copy of this class.
 */
public final class ClasspathNode extends Node {

    public ClasspathNode(Environment environment, Collection<Class<? extends Plugin>> plugins) {
        super(NodeConstruction.prepareConstruction(environment, null, new NodeServiceProvider() {
            @Override
            PluginsService newPluginService(Environment env, PluginsLoader ignored) {
                return new ClasspathPluginsService(env, plugins);
            }
        }, true));
    }

    /** The real bootstrap's listener puts node and cluster ids into the log4j context; this
     *  node logs through the plain console set-up, where that listener fails. */
    @Override
    protected void configureNodeAndClusterIdStateListener(ClusterService clusterService) {}
}
