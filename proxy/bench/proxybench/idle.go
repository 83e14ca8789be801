package main

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// idleCell opens n keep-alive HTTP/1.1 connections to addr, one after the
// other, sends one 1 KiB POST on each and reads its answer, then leaves
// them open and idle for settle: the cell holds the processes' RSS before
// the connections and with them, what a proxy pays per idle connection.
func idleCell(mode, addr, host string, n int, settle time.Duration, procs []*proc) (cell, error) {
	c := cell{mode: mode, proto: "http1", idleConns: n}
	for _, p := range procs {
		c.rssIdle = append(c.rssIdle, rssKB(p.pids()))
	}
	if host == "" {
		host = "bench"
	}
	req := "POST / HTTP/1.1\r\nHost: " + host + "\r\nContent-Length: 1024\r\n\r\n" + strings.Repeat("x", 1024)
	conns := make([]net.Conn, 0, n)
	defer func() {
		for _, nc := range conns {
			_ = nc.Close()
		}
	}()
	for i := range n {
		nc, err := net.DialTimeout("tcp", addr, 5*time.Second)
		if err != nil {
			return c, fmt.Errorf("idle connection %d: %w", i, err)
		}
		conns = append(conns, nc)
		_ = nc.SetDeadline(time.Now().Add(10 * time.Second))
		if _, err := io.WriteString(nc, req); err != nil {
			return c, fmt.Errorf("idle connection %d: %w", i, err)
		}
		resp, err := http.ReadResponse(bufio.NewReader(nc), nil)
		if err != nil {
			return c, fmt.Errorf("idle connection %d: %w", i, err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		_ = resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return c, fmt.Errorf("idle connection %d: status %d", i, resp.StatusCode)
		}
		_ = nc.SetDeadline(time.Time{})
	}
	time.Sleep(settle)
	for _, p := range procs {
		c.rssLoad = append(c.rssLoad, rssKB(p.pids()))
	}
	return c, nil
}

// printIdle prints the idle-connection cells: RSS per process before and
// with the connections, and the difference per connection.
func printIdle(cells []cell) {
	header := false
	for _, c := range cells {
		if c.idleConns == 0 {
			continue
		}
		if !header {
			fmt.Println()
			fmt.Println("| path | idle HTTP/1.1 connections | RSS before MiB | RSS with them MiB | KiB per connection |")
			fmt.Println("|---|---|---|---|---|")
			header = true
		}
		mib := func(kb int64) string { return strconv.FormatFloat(float64(kb)/1024, 'f', 1, 64) }
		var per []int64
		for i := range c.rssLoad {
			per = append(per, (c.rssLoad[i]-c.rssIdle[i])/int64(c.idleConns))
		}
		fmt.Printf("| %s | %d | %s | %s | %s |\n", c.mode, c.idleConns, join(c.rssIdle, mib), join(c.rssLoad, mib),
			join(per, func(v int64) string { return strconv.FormatInt(v, 10) }))
	}
}
