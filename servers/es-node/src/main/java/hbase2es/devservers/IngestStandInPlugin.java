package hbase2es.devservers;

import org.elasticsearch.ingest.AbstractProcessor;
import org.elasticsearch.ingest.ConfigurationUtils;
import org.elasticsearch.ingest.IngestDocument;
import org.elasticsearch.ingest.Processor;
import org.elasticsearch.plugins.IngestPlugin;
import org.elasticsearch.plugins.Plugin;

import java.lang.reflect.Proxy;
import java.util.Map;

/**
 * Stand-ins for the "set" and "fail" ingest processors, so the node runs real ingest
 * pipelines (the server's IngestService, ?pipeline=, default_pipeline, bulk items that a
 * pipeline refused) for hbase2es's [elasticsearch] pipeline tests.
 *
 * The processors proper live in the ingest-common module, which Maven Central does not
 * carry for 8.x/9.x (neither org.elasticsearch.plugin:ingest-common nor codelibs' module
 * copies, which end at 7.x). These take a constant value (no mustache templates: lang-mustache
 * is missing too) and run no conditions ("if" needs painless). Processor.Factory.create
 * gained a ProjectId argument in 9.x; a proxy serves both signatures from one source.
 */
public final class IngestStandInPlugin extends Plugin implements IngestPlugin {

    @Override
    public Map<String, Processor.Factory> getProcessors(Processor.Parameters parameters) {
        return Map.of(
            "set", factory((tag, description, config) -> new SetField(tag, description,
                ConfigurationUtils.readStringProperty("set", tag, config, "field"),
                ConfigurationUtils.readObject("set", tag, config, "value"))),
            "fail", factory((tag, description, config) -> new Fail(tag, description,
                ConfigurationUtils.readStringProperty("fail", tag, config, "message"))));
    }

    private interface Maker {
        Processor make(String tag, String description, Map<String, Object> config);
    }

    @SuppressWarnings("unchecked")
    private static Processor.Factory factory(Maker maker) {
        return (Processor.Factory) Proxy.newProxyInstance(Processor.Factory.class.getClassLoader(),
            new Class<?>[] {Processor.Factory.class}, (proxy, method, args) -> {
                switch (method.getName()) {
                    case "create":  // (registry, tag, description, config[, projectId])
                        return maker.make((String) args[1], (String) args[2], (Map<String, Object>) args[3]);
                    case "hashCode":
                        return System.identityHashCode(proxy);
                    case "equals":
                        return proxy == args[0];
                    case "toString":
                        return "hbase2es ingest stand-in factory";
                    default:
                        throw new UnsupportedOperationException(method.getName());
                }
            });
    }

    private static final class SetField extends AbstractProcessor {
        private final String field;
        private final Object value;

        SetField(String tag, String description, String field, Object value) {
            super(tag, description);
            this.field = field;
            this.value = value;
        }

        @Override
        public IngestDocument execute(IngestDocument document) {
            document.setFieldValue(field, value);
            return document;
        }

        @Override
        public String getType() {
            return "set";
        }
    }

    /** Named so that the error's type reads fail_processor_exception, as ingest-common's does. */
    private static final class FailProcessorException extends RuntimeException {
        FailProcessorException(String message) {
            super(message);
        }
    }

    private static final class Fail extends AbstractProcessor {
        private final String message;

        Fail(String tag, String description, String message) {
            super(tag, description);
            this.message = message;
        }

        @Override
        public IngestDocument execute(IngestDocument document) {
            throw new FailProcessorException(message);
        }

        @Override
        public String getType() {
            return "fail";
        }
    }
}
