// MariaDB Connector/J through ferry: a real JDBC client (Debian's libmariadb-java), run by
// tests/tests/proxy_jdbc.rs with `java -cp mariadb-java-client.jar JdbcThroughFerry.java`.
// Connector/J pipelines: the login with its first queries, batches (all statements sent before any
// answer is read), and prepare-then-execute. Prints one JSON object with what it saw.
//
// Arguments: PORT USER PASSWORD [ADMIN_PORT BACKEND]. With the last two it then drains BACKEND
// through ferry's admin endpoint and checks that the session moved with its state. With
// -Dferry.ca=PEM it connects over TLS, checking ferry's certificate against that file.
import java.io.ByteArrayInputStream;
import java.net.HttpURLConnection;
import java.net.URL;
import java.nio.charset.StandardCharsets;
import java.security.MessageDigest;
import java.sql.*;
import java.util.*;

public class JdbcThroughFerry {
    public static void main(String[] args) throws Exception {
        String port = args[0], user = args[1], pass = args[2];
        String url = "jdbc:mariadb://127.0.0.1:" + port + "/jd?createDatabaseIfNotExist=true&connectTimeout=30000&socketTimeout=60000"
            + "&allowMultiQueries=true&allowLocalInfile=true&useServerPrepStmts=true";
        // -Dferry.ca=PEM: TLS to ferry, its certificate checked against that file.
        String ca = System.getProperty("ferry.ca");
        if (ca != null) url += "&useSsl=true&serverSslCert=" + ca;
        Map<String, Object> r = new LinkedHashMap<>();
        try (Connection c = DriverManager.getConnection(url, user, pass)) {
            try (Statement s = c.createStatement()) {
                s.execute("create database if not exists jd");
                s.execute("create table if not exists jd.t (id int primary key, v varchar(20), b longblob)");
            }
            c.setCatalog("mysql");
            try (Statement s = c.createStatement(); ResultSet rs = s.executeQuery("select database()")) { rs.next(); r.put("db", rs.getString(1)); }
            c.setCatalog("jd");
            // server-side prepared statement, re-executed with NULLs
            try (PreparedStatement p = c.prepareStatement("insert into t (id, v) values (?, ?)")) {
                for (int i = 1; i <= 3; i++) {
                    p.setInt(1, i);
                    if (i == 2) p.setNull(2, Types.VARCHAR); else p.setString(2, "v" + i);
                    p.executeUpdate();
                }
            }
            // batch: Connector/J sends the whole batch before reading the answers
            try (PreparedStatement p = c.prepareStatement("insert into t (id, v) values (?, ?)")) {
                for (int i = 10; i < 510; i++) { p.setInt(1, i); p.setString(2, "b" + i); p.addBatch(); }
                int[] counts = p.executeBatch();
                r.put("batch", counts.length);
            }
            try (Statement s = c.createStatement()) {
                for (int i = 1000; i < 1100; i++) s.addBatch("insert into t (id, v) values (" + i + ", 's')");
                r.put("text_batch", s.executeBatch().length);
            }
            // A stream parameter goes as COM_STMT_SEND_LONG_DATA before the execute.
            try (PreparedStatement p = c.prepareStatement("insert into t (id, v, b) values (?, 'long', ?)")) {
                byte[] data = new byte[300000];
                for (int i = 0; i < data.length; i++) data[i] = (byte) (i % 251);
                p.setInt(1, 4);
                p.setBinaryStream(2, new ByteArrayInputStream(data));
                p.executeUpdate();
                try (Statement s = c.createStatement(); ResultSet rs = s.executeQuery("select b from t where id = 4")) {
                    rs.next();
                    r.put("long_data_same", Arrays.equals(data, rs.getBytes(1)));
                }
            }
            try (PreparedStatement p = c.prepareStatement("select v from t where id = ?")) {
                p.setInt(1, 2);
                try (ResultSet rs = p.executeQuery()) { rs.next(); r.put("null", rs.getString(1) == null); }
            }
            // multi-statements
            try (Statement s = c.createStatement()) {
                boolean isRs = s.execute("select 1; select 2, 'two'");
                List<String> got = new ArrayList<>();
                while (true) {
                    if (isRs) { try (ResultSet rs = s.getResultSet()) { while (rs.next()) got.add(rs.getString(rs.getMetaData().getColumnCount())); } }
                    else if (s.getUpdateCount() == -1) break;
                    isRs = s.getMoreResults();
                }
                r.put("multi", String.join(",", got));
            }
            // LOAD DATA LOCAL from a stream
            StringBuilder csv = new StringBuilder();
            for (int i = 2000; i < 3000; i++) csv.append(i).append(",l").append(i).append('\n');
            try (Statement s = c.createStatement()) {
                s.unwrap(org.mariadb.jdbc.MariaDbStatement.class).setLocalInfileInputStream(
                    new ByteArrayInputStream(csv.toString().getBytes(StandardCharsets.UTF_8)));
                r.put("loaded", s.executeUpdate("load data local infile 'rows.csv' into table t fields terminated by ',' (id, v)"));
            }
            // transaction rolled back, then committed
            c.setAutoCommit(false);
            try (Statement s = c.createStatement()) { s.execute("insert into t (id, v) values (5000, 'x')"); }
            c.rollback();
            try (Statement s = c.createStatement()) { s.execute("insert into t (id, v) values (5001, 'y')"); }
            c.commit();
            c.setAutoCommit(true);
            // error, then the connection goes on
            try (Statement s = c.createStatement()) { s.execute("selec 1"); r.put("error", 0); }
            catch (SQLException e) { r.put("error", e.getErrorCode()); }
            try (Statement s = c.createStatement(); ResultSet rs = s.executeQuery("select 42")) { rs.next(); r.put("after_error", rs.getInt(1)); }
            // a 17 MB blob both ways
            byte[] blob = new byte[17 * 1024 * 1024 + 77];
            for (int i = 0; i < blob.length; i++) blob[i] = (byte) (i * 31 + 7);
            try (PreparedStatement p = c.prepareStatement("update t set b = ? where id = 1")) { p.setBytes(1, blob); p.executeUpdate(); }
            try (Statement s = c.createStatement(); ResultSet rs = s.executeQuery("select b from t where id = 1")) {
                rs.next(); byte[] back = rs.getBytes(1);
                r.put("blob_same", Arrays.equals(blob, back));
            }
            try (Statement s = c.createStatement(); ResultSet rs = s.executeQuery("select count(*), sum(id) from t")) {
                rs.next(); r.put("count", rs.getLong(1) + "/" + rs.getLong(2));
            }
            // connection reset (COM_RESET_CONNECTION) keeps it usable
            try (Statement s = c.createStatement()) { s.execute("set @x = 7"); }
            c.unwrap(org.mariadb.jdbc.MariaDbConnection.class).reset();
            try (Statement s = c.createStatement(); ResultSet rs = s.executeQuery("select @x is null, database()")) { rs.next(); r.put("reset", rs.getBoolean(1) + "/" + rs.getString(2)); }
            if (args.length >= 5) migrate(c, args[3], args[4], r);
        }
        print(r);
    }

    /// State set before a drain of `backend`, read back after the session moved; a prepared
    /// statement made before the move is executed after it.
    static void migrate(Connection c, String adminPort, String backend, Map<String, Object> r) throws Exception {
        try (Statement s = c.createStatement()) {
            s.execute("set @moved = 'yes', time_zone = '+05:00', sql_mode = 'ANSI_QUOTES'");
        }
        PreparedStatement keep = c.prepareStatement("select concat(?, @moved), @@time_zone, @@sql_mode, database()");
        int before = serverId(c);
        r.put("server_before", before);
        HttpURLConnection h = (HttpURLConnection) new URL("http://127.0.0.1:" + adminPort + "/api/backends/" + backend + "/drain").openConnection();
        h.setRequestMethod("POST");
        // Without an admin token, ferry takes a POST only with a JSON content type (no cross-site form).
        h.setRequestProperty("Content-Type", "application/json");
        h.setConnectTimeout(10000);
        h.setReadTimeout(10000);
        r.put("drain_status", h.getResponseCode());
        h.disconnect();
        long deadline = System.currentTimeMillis() + 15000;
        int after = before;
        while (after == before && System.currentTimeMillis() < deadline) {
            Thread.sleep(50);
            after = serverId(c);
        }
        r.put("server_after", after);
        keep.setString(1, "moved=");
        try (ResultSet rs = keep.executeQuery()) {
            rs.next();
            r.put("state_after", rs.getString(1) + "|" + rs.getString(2) + "|" + rs.getString(3) + "|" + rs.getString(4));
        }
        keep.close();
        try (PreparedStatement p = c.prepareStatement("insert into t (id, v) values (?, 'after')")) {
            for (int i = 6000; i < 6100; i++) { p.setInt(1, i); p.addBatch(); }
            r.put("batch_after", p.executeBatch().length);
        }
    }

    static int serverId(Connection c) throws SQLException {
        try (Statement s = c.createStatement(); ResultSet rs = s.executeQuery("select @@server_id")) {
            rs.next();
            return rs.getInt(1);
        }
    }

    static void print(Map<String, Object> r) {
        StringBuilder out = new StringBuilder("{");
        for (Map.Entry<String, Object> e : r.entrySet()) {
            if (out.length() > 1) out.append(",");
            Object v = e.getValue();
            out.append('"').append(e.getKey()).append("\":");
            out.append(v instanceof String ? "\"" + ((String) v).replace("\\", "\\\\").replace("\"", "\\\"") + "\"" : String.valueOf(v));
        }
        System.out.println(out.append("}"));
    }
}
