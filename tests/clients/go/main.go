// go-sql-driver/mysql (pure Go; Debian's golang-github-go-sql-driver-mysql-dev) through ferry, run
// by tests/tests/proxy_go.rs in GOPATH mode against Debian's packaged sources: prepared statements
// with NULLs, multi-statements, LOAD DATA LOCAL from a registered reader, a 17 MB blob both ways,
// an error followed by more use, a rolled-back transaction. Prints one JSON object.
//
// Arguments: PORT USER PASSWORD [CA_PEM]. With CA_PEM it connects over TLS (Go's crypto/tls),
// checking ferry's certificate against that file.
package main

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"database/sql"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/go-sql-driver/mysql"
)

func must(err error) {
	if err != nil {
		fmt.Fprintln(os.Stderr, "error:", err)
		os.Exit(1)
	}
}

func main() {
	port, user, pass := os.Args[1], os.Args[2], os.Args[3]
	r := map[string]interface{}{}
	var csv strings.Builder
	for i := 2000; i < 3000; i++ {
		fmt.Fprintf(&csv, "%d,l%d\n", i, i)
	}
	mysql.RegisterReaderHandler("rows", func() io.Reader { return strings.NewReader(csv.String()) })
	dsn := fmt.Sprintf("%s:%s@tcp(127.0.0.1:%s)/?multiStatements=true&timeout=30s&readTimeout=60s&maxAllowedPacket=0", user, pass, port)
	if len(os.Args) > 4 {
		pem, err := os.ReadFile(os.Args[4])
		must(err)
		roots := x509.NewCertPool()
		if !roots.AppendCertsFromPEM(pem) {
			must(fmt.Errorf("no certificate in %s", os.Args[4]))
		}
		must(mysql.RegisterTLSConfig("ferry", &tls.Config{RootCAs: roots, ServerName: "127.0.0.1"}))
		dsn += "&tls=ferry"
	}
	db, err := sql.Open("mysql", dsn)
	must(err)
	db.SetMaxOpenConns(1)
	_, err = db.Exec("create database if not exists gd")
	must(err)
	_, err = db.Exec("create table if not exists gd.t (id int primary key, v varchar(20), b longblob)")
	must(err)
	// Prepared (binary protocol) with NULLs, re-executed.
	st, err := db.Prepare("insert into gd.t (id, v) values (?, ?)")
	must(err)
	for i := 1; i <= 3; i++ {
		var v interface{} = fmt.Sprintf("v%d", i)
		if i == 2 {
			v = nil
		}
		_, err = st.Exec(i, v)
		must(err)
	}
	var nv sql.NullString
	must(db.QueryRow("select v from gd.t where id = ?", 2).Scan(&nv))
	r["null"] = !nv.Valid
	// Multi-statements.
	rows, err := db.Query("select 1; select 2")
	must(err)
	var multi []int
	for {
		for rows.Next() {
			var x int
			must(rows.Scan(&x))
			multi = append(multi, x)
		}
		if !rows.NextResultSet() {
			break
		}
	}
	rows.Close()
	r["multi"] = multi
	res, err := db.Exec("load data local infile 'Reader::rows' into table gd.t fields terminated by ',' (id, v)")
	must(err)
	n, _ := res.RowsAffected()
	r["loaded"] = n
	// 17 MB blob.
	blob := bytes.Repeat([]byte{1, 2, 3, 4, 5, 6, 7}, 17*1024*1024/7+3)
	_, err = db.Exec("update gd.t set b = ? where id = 1", blob)
	must(err)
	var back []byte
	must(db.QueryRow("select b from gd.t where id = 1").Scan(&back))
	r["blob_same"] = bytes.Equal(back, blob)
	_, err = db.Exec("selec 1")
	if me, ok := err.(*mysql.MySQLError); ok {
		r["error"] = me.Number
	}
	var x int
	must(db.QueryRow("select 42").Scan(&x))
	r["after_error"] = x
	tx, err := db.Begin()
	must(err)
	_, err = tx.Exec("insert into gd.t (id, v) values (5000, 'x')")
	must(err)
	must(tx.Rollback())
	var cnt int
	must(db.QueryRow("select count(*) from gd.t").Scan(&cnt))
	r["count"] = cnt
	out, _ := json.Marshal(r)
	fmt.Println(string(out))
}
