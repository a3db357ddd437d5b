import de.bwaldvogel.mongo.MongoServer;
import de.bwaldvogel.mongo.MongoVersion;
import de.bwaldvogel.mongo.backend.memory.MemoryBackend;
import java.io.InputStream;
import java.util.List;

/**
 * The rig's MongoDB-wire server: mongo-java-server's memory backend on 127.0.0.1.
 * Prints "MONGO_JAVA_READY <uri>" once listening and exits when stdin closes, so it never
 * outlives the process that started it.
 */
public final class Main {
  /**
   * mongo-java-server reports wire version 8 even for its MONGO_5_0 setting, and the Node
   * driver 7 refuses servers below wire version 9 (MongoDB 4.4); the commands we use behave
   * the same either way, so we claim 4.4.
   */
  enum Claimed implements MongoVersion {
    MONGO_4_4;

    @Override
    public List<Integer> getVersionArray() {
      return List.of(4, 4, 0);
    }

    @Override
    public int getWireVersion() {
      return 9;
    }
  }

  public static void main(String[] args) throws Exception {
    int port = args.length > 0 ? Integer.parseInt(args[0]) : 0;
    MongoServer server = new MongoServer(new MemoryBackend().version(Claimed.MONGO_4_4));
    server.bind("127.0.0.1", port);
    int bound = server.getLocalAddress().getPort();
    System.out.println("MONGO_JAVA_READY mongodb://127.0.0.1:" + bound);
    System.out.flush();
    InputStream in = System.in;
    byte[] sink = new byte[256];
    while (in.read(sink) >= 0) {
      // Nothing is read from stdin; it only tells us when our parent has gone.
    }
    server.shutdownNow();
  }
}
