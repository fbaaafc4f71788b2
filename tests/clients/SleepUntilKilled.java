// MariaDB Connector/J running `SELECT SLEEP(5)` on each port in turn, for tests/tests/proxy_kill.rs:
// the test KILLs each statement from another connection and compares what JDBC reports directly
// and through ferry. Run with `java -cp mariadb-java-client.jar SleepUntilKilled.java USER PASSWORD
// PORT...`; prints one JSON array, one object per port: {"error": code, "state": SQLSTATE,
// "message": text} or {"result": value} when the statement was not killed.
import java.sql.*;

public class SleepUntilKilled {
    public static void main(String[] args) throws Exception {
        String user = args[0], pass = args[1];
        StringBuilder out = new StringBuilder("[");
        for (int i = 2; i < args.length; i++) {
            if (i > 2) out.append(",");
            // Text protocol, so that the backend's processlist shows the statement as sent.
            String url = "jdbc:mariadb://127.0.0.1:" + args[i] + "/?connectTimeout=30000&socketTimeout=30000";
            try (Connection c = DriverManager.getConnection(url, user, pass);
                 Statement s = c.createStatement();
                 ResultSet rs = s.executeQuery("SELECT SLEEP(5)")) {
                rs.next();
                out.append("{\"result\":").append(rs.getInt(1)).append("}");
            } catch (SQLException e) {
                out.append("{\"error\":").append(e.getErrorCode())
                    .append(",\"state\":").append(quote(e.getSQLState()))
                    .append(",\"message\":").append(quote(e.getMessage())).append("}");
            }
        }
        System.out.println(out.append("]"));
    }

    static String quote(String s) {
        if (s == null) return "null";
        StringBuilder q = new StringBuilder("\"");
        for (char ch : s.toCharArray()) {
            if (ch == '"' || ch == '\\') q.append('\\').append(ch);
            else if (ch < 0x20) q.append(String.format("\\u%04x", (int) ch));
            else q.append(ch);
        }
        return q.append('"').toString();
    }
}
