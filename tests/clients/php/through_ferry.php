<?php
// PHP's mysqlnd through ferry, run by tests/tests/proxy_php.rs: mysqli (native prepared
// statements with NULLs and send_long_data, multi_query, LOAD DATA LOCAL, COM_INIT_DB,
// transactions, an error followed by more use, a 17 MB blob both ways, change_user) and PDO with
// native prepares. mysqlnd is PHP's own protocol implementation, not libmariadb.
// Prints one JSON object with what it saw.
//
// Arguments: PORT USER PASSWORD OTHER_USER OTHER_PASSWORD CSV_PATH.
[$port, $user, $password, $otherUser, $otherPassword, $csv] = array_slice($argv, 1);
$port = (int) $port;
mysqli_report(MYSQLI_REPORT_ERROR | MYSQLI_REPORT_STRICT);
$r = [];

function connect(string $user, string $password, int $port): mysqli {
    $m = mysqli_init();
    $m->options(MYSQLI_OPT_LOCAL_INFILE, true);
    $m->options(MYSQLI_OPT_CONNECT_TIMEOUT, 30);
    $m->options(MYSQLI_OPT_READ_TIMEOUT, 60);
    $m->real_connect('127.0.0.1', $user, $password, '', $port);
    return $m;
}

$m = connect($user, $password, $port);
$m->query('create database if not exists php');
$m->select_db('php');
$r['db'] = $m->query('select database()')->fetch_row()[0];
$m->query('create table t (id int primary key, v varchar(20), b longblob)');

// Native prepared statement, executed three times, with a NULL.
$insert = $m->prepare('insert into t (id, v) values (?, ?)');
foreach ([1, 2, 3] as $i) {
    $v = $i === 2 ? null : "v$i";
    $insert->bind_param('is', $i, $v);
    $insert->execute();
}
$select = $m->prepare('select v from t where id = ?');
$id = 2;
$select->bind_param('i', $id);
$select->execute();
$r['null'] = $select->get_result()->fetch_row()[0] === null;

// COM_STMT_SEND_LONG_DATA.
$long = $m->prepare("insert into t (id, v, b) values (4, 'long', ?)");
$null = null;
$long->bind_param('b', $null);
$piece = str_repeat("\x01\x02\x03", 40000);
foreach (range(1, 3) as $_) {
    $long->send_long_data(0, $piece);
}
$long->execute();
$r['long_data_len'] = (int) $m->query('select length(b) from t where id = 4')->fetch_row()[0];

// Multi-statements.
$m->multi_query('select 1; select 2, "two"');
$multi = [];
do {
    if ($res = $m->store_result()) {
        $multi[] = $res->fetch_all(MYSQLI_NUM);
        $res->free();
    }
} while ($m->more_results() && $m->next_result());
$r['multi'] = $multi;

// LOAD DATA LOCAL: mysqlnd reads the file itself, ferry relays it.
$m->query("load data local infile '" . $m->real_escape_string($csv) . "' into table t fields terminated by ',' (id, v)");
$r['loaded'] = $m->affected_rows;

$m->begin_transaction();
$m->query("insert into t (id, v) values (5000, 'x')");
$m->rollback();
$m->begin_transaction();
$m->query("insert into t (id, v) values (5001, 'y')");
$m->commit();

try {
    $m->query('selec 1');
    $r['error'] = 0;
} catch (mysqli_sql_exception $e) {
    $r['error'] = $e->getCode();
}
$r['after_error'] = (int) $m->query('select 42')->fetch_row()[0];

// A 17 MB blob both ways.
$blob = '';
for ($i = 0; $i < 256; $i++) {
    $blob .= chr($i);
}
$blob = substr(str_repeat($blob, intdiv(17 * 1024 * 1024, 256) + 1), 0, 17 * 1024 * 1024 + 11);
$up = $m->prepare('update t set b = ? where id = 1');
$up->bind_param('s', $blob);
$up->execute();
$back = $m->query('select b from t where id = 1')->fetch_row()[0];
$r['blob_same'] = $back === $blob;

$row = $m->query('select count(*), cast(sum(id) as char) from t')->fetch_row();
$r['count'] = [(int) $row[0], $row[1]];

// COM_CHANGE_USER (mysqlnd answers the auth switch itself).
$m->query('set @x = 7');
$r['changed_ok'] = $m->change_user($otherUser, $otherPassword, 'php');
$r['changed'] = $m->query('select current_user(), @x is null, database()')->fetch_row();
try {
    $m->query('drop table t');
    $r['other_denied'] = 0;
} catch (mysqli_sql_exception $e) {
    $r['other_denied'] = $e->getCode();
}
$m->close();

// A wrong password in COM_CHANGE_USER, on a fresh connection.
$m = connect($user, $password, $port);
try {
    $r['bad_change'] = $m->change_user($user, $password . 'wrong', '') ? 0 : $m->errno;
} catch (mysqli_sql_exception $e) {
    $r['bad_change'] = $e->getCode();
}
$m->close();

// PDO with native (server-side) prepares.
$pdo = new PDO("mysql:host=127.0.0.1;port=$port;dbname=php", $user, $password, [
    PDO::ATTR_ERRMODE => PDO::ERRMODE_EXCEPTION,
    PDO::ATTR_EMULATE_PREPARES => false,
]);
$st = $pdo->prepare('select v, id + ? from t where id = ?');
$st->execute([10, 3]);
$r['pdo'] = $st->fetch(PDO::FETCH_NUM);

echo json_encode($r), "\n";
