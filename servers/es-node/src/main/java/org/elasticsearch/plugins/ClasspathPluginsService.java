package org.elasticsearch.plugins;

import org.elasticsearch.Build;
import org.elasticsearch.action.admin.cluster.node.info.PluginsAndModules;
import org.elasticsearch.env.Environment;
import org.elasticsearch.plugins.spi.SPIClassIterator;

import java.lang.reflect.Constructor;
import java.util.ArrayList;
import java.util.Collection;
import java.util.Iterator;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;

/**
 * A PluginsService holding plugin classes found on the classpath.
 *
 * In this package because LoadedPlugin, the empty PluginsLoader and createExtension are
 * package-private.
 */
public final class ClasspathPluginsService extends PluginsService {

    private final List<LoadedPlugin> loaded;

    public ClasspathPluginsService(Environment env, Collection<Class<? extends Plugin>> classes) {
        super(env.settings(), env.configDir(), new PluginsLoader(Set.of(), Set.of(), Map.of()));
        List<LoadedPlugin> plugins = new ArrayList<>();
        for (Class<? extends Plugin> type : classes) {
            Plugin instance = loadPlugin(type, env.settings(), env.configDir());
            PluginDescriptor descriptor = new PluginDescriptor(
                type.getName(), "classpath plugin (hbase2es dev server)", "NA",
                Build.current().version(), Integer.toString(Runtime.version().feature()),
                type.getName(), null, List.of(), false, false, false, false);
            plugins.add(new LoadedPlugin(descriptor, instance, type.getClassLoader()));
        }
        loadExtensions(plugins);
        this.loaded = List.copyOf(plugins);
    }

    @Override
    protected List<LoadedPlugin> plugins() {
        return loaded;
    }

    @Override
    public PluginsAndModules info() {
        return new PluginsAndModules(
            loaded.stream().map(p -> new PluginRuntimeInfo(p.descriptor())).toList(), List.of());
    }

    /**
     * Every plugin here shares the application class loader, so a plain SPI scan per plugin
     * would find each provider once per plugin (the server's own FeatureSpecifications among
     * them) and the node would refuse the duplicates. Each provider class is created once,
     * for the plugin its constructor asks for (or the first plugin when it takes none).
     */
    @Override
    public <T> List<? extends T> loadServiceProviders(Class<T> service) {
        Map<Class<?>, T> found = new LinkedHashMap<>();
        for (LoadedPlugin plugin : loaded) {
            Iterator<Class<? extends T>> it = SPIClassIterator.get(service, plugin.classLoader());
            while (it.hasNext()) {
                Class<? extends T> provider = it.next();
                if (!found.containsKey(provider) && accepts(provider, plugin.instance())) {
                    found.put(provider, createExtension(provider, service, plugin.instance()));
                }
            }
        }
        return List.copyOf(found.values());
    }

    private static boolean accepts(Class<?> provider, Plugin plugin) {
        for (Constructor<?> c : provider.getConstructors()) {
            if (c.getParameterCount() == 1 && c.getParameterTypes()[0] != plugin.getClass()) {
                return false;
            }
        }
        return true;
    }
}
