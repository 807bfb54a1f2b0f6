// TLS links between members stay up whatever happens to other
// connections: garbage sent to a member's cluster port, a peer whose
// handshake fails, a member killed. (CAF 0.17 leaves OpenSSL errors of
// one connection in the thread's error queue, where they used to fail the
// next read of every other connection; see runtime/src/openssl_errors.cpp.)

#include <boost/test/unit_test.hpp>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <thread>

#include "../support/free_ports.hpp"
#include "node_process.hpp"

using namespace testnode;
using json = nlohmann::json;

namespace {

constexpr const char* tls_secret = "0123456789abcdef-tls-secret";

struct tls_cluster {
  std::string certs = make_cluster_certificates("mnemo-tls-links");
  uint16_t base = mnemo::test::free_port_block(3);
  std::string members;
  std::vector<std::string> dirs;
  std::vector<std::unique_ptr<process>> nodes;

  tls_cluster() {
    for (int i = 0; i < 3; ++i) {
      if (i > 0) members += ",";
      members += "n" + std::to_string(i + 1) +
                 "@127.0.0.1:" + std::to_string(base + i);
      dirs.push_back(temp_dir("mnemo-tls-links-n" + std::to_string(i + 1)));
    }
    for (int i = 0; i < 3; ++i)
      nodes.push_back(start(i, "n" + std::to_string(i + 1)));
    wait_joined(3);
  }

  std::unique_ptr<process> start(int i, const std::string& cert) {
    auto ca = cert == "other" ? "other" : "ca";
    return std::make_unique<process>(
        MNEMO_BANK_NODE,
        std::vector<std::string>{
            "--data", dirs[i], "--listen", "127.0.0.1:0",
            "--cluster.node-id=n" + std::to_string(i + 1),
            "--cluster.members=" + members,
            std::string{"--cluster.secret="} + tls_secret, "--cluster.retry-ms=100",
            "--cluster.tls-certificate=" + certs + "/" + cert + ".pem",
            "--cluster.tls-key=" + certs + "/" + cert + ".key",
            "--cluster.tls-ca=" + certs + "/" + ca + ".pem"});
  }

  void wait_joined(size_t running) {
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds{15};
    for (;;) {
      bool ok = true;
      for (auto& n : nodes) {
        if (!n) continue;
        client c{n->port()};
        auto h = body_of(c.call("GET", "/health"));
        if (!h.contains("cluster") ||
            h["cluster"]["connected"].size() + 1 != running)
          ok = false;
      }
      if (ok) return;
      BOOST_REQUIRE_MESSAGE(std::chrono::steady_clock::now() < deadline,
                            "the members did not join");
      std::this_thread::sleep_for(std::chrono::milliseconds{50});
    }
  }

  // How often each member logged losing each other member since the last
  // call: result[i][j] for member i losing member j.
  std::vector<std::vector<size_t>> losses() {
    std::vector<std::vector<size_t>> result(3, std::vector<size_t>(3, 0));
    for (size_t i = 0; i < nodes.size(); ++i) {
      if (!nodes[i]) continue;
      for (auto& line : nodes[i]->drain_stdout()) {
        auto j = json::parse(line, nullptr, false);
        if (!j.is_object() || j.value("what", "") != "member_down") continue;
        for (size_t k = 0; k < 3; ++k)
          if (j.value("detail", "").find("'n" + std::to_string(k + 1) + "'") !=
              std::string::npos)
            ++result[i][k];
      }
    }
    return result;
  }
};

// Sends `bytes` to 127.0.0.1:`port` and closes.
void poke(uint16_t port, const std::string& bytes) {
  auto fd = ::socket(AF_INET, SOCK_STREAM, 0);
  BOOST_REQUIRE(fd >= 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0) {
    auto sent = ::send(fd, bytes.data(), bytes.size(), MSG_NOSIGNAL);
    (void)sent;
    std::this_thread::sleep_for(std::chrono::milliseconds{5});
  }
  ::close(fd);
}

// Reads accounts owned all over the cluster through member 0 while `work`
// runs; returns how many reads failed.
template <class Work>
size_t failed_reads_during(tls_cluster& f, const std::vector<std::string>& ids,
                           Work work) {
  std::atomic<bool> done{false};
  std::atomic<size_t> failed{0};
  std::thread reader{[&] {
    client c{f.nodes[0]->port()};
    while (!done) {
      for (auto& id : ids) {
        auto r = c.call("GET", "/accounts/" + id);
        if (!r || r->status != 200) ++failed;
      }
    }
  }};
  work();
  done = true;
  reader.join();
  return failed;
}

}  // namespace

BOOST_AUTO_TEST_SUITE(bank_cluster_tls)

BOOST_AUTO_TEST_CASE(links_survive_garbage_failed_handshakes_and_kills) {
  tls_cluster f;
  client c1{f.nodes[0]->port()};
  std::vector<std::string> ids;
  for (int i = 0; i < 9; ++i) {
    ids.push_back("g" + std::to_string(i));
    BOOST_REQUIRE_EQUAL(c1.call("POST", "/accounts",
                                json{{"id", ids.back()}, {"owner", "o"}}.dump())
                            ->status,
                        201u);
  }
  for (auto& n : f.nodes) n->drain_stdout();

  // 1. Anyone on the network: plain-text garbage and half handshakes on
  //    every member's cluster port.
  auto failed = failed_reads_during(f, ids, [&] {
    for (int round = 0; round < 20; ++round)
      for (int i = 0; i < 3; ++i) {
        poke(f.base + i, "GET / HTTP/1.1\r\nHost: x\r\n\r\n");
        poke(f.base + i, std::string{"\x16\x03\x01\x00\x05hello", 10});
      }
  });
  BOOST_CHECK_EQUAL(failed, 0u);
  auto lost = f.losses();
  for (auto& row : lost)
    for (auto n : row) BOOST_CHECK_EQUAL(n, 0u);

  // 2. n3 restarted with a certificate of another CA: n1 and n2 fail
  //    their handshakes with it, again and again; their link holds.
  f.nodes[2]->kill();
  f.nodes[2].reset();
  f.wait_joined(2);
  std::vector<std::string> on_n1_n2;
  for (auto& id : ids)  // the accounts that still answer
    if (body_of(c1.call("GET", "/accounts/" + id)).contains("balance"))
      on_n1_n2.push_back(id);
  BOOST_REQUIRE(!on_n1_n2.empty() && on_n1_n2.size() < ids.size());
  f.nodes[2] = f.start(2, "other");
  f.losses();
  failed = failed_reads_during(f, on_n1_n2, [] {
    std::this_thread::sleep_for(std::chrono::seconds{2});
  });
  BOOST_CHECK_EQUAL(failed, 0u);
  lost = f.losses();
  BOOST_CHECK_EQUAL(lost[0][1], 0u);
  BOOST_CHECK_EQUAL(lost[1][0], 0u);

  // 3. The intruder killed: the link of n1 and n2 holds.
  failed = failed_reads_during(f, on_n1_n2, [&] {
    f.nodes[2]->kill();
    std::this_thread::sleep_for(std::chrono::seconds{1});
  });
  BOOST_CHECK_EQUAL(failed, 0u);
  lost = f.losses();
  BOOST_CHECK_EQUAL(lost[0][1], 0u);
  BOOST_CHECK_EQUAL(lost[1][0], 0u);

  // 4. A member killed while joined: only its own link goes.
  f.nodes[2] = f.start(2, "n3");
  f.wait_joined(3);
  f.losses();
  failed = failed_reads_during(f, on_n1_n2, [&] {
    f.nodes[2]->kill();
    std::this_thread::sleep_for(std::chrono::seconds{1});
  });
  BOOST_CHECK_EQUAL(failed, 0u);
  f.nodes[2].reset();
  lost = f.losses();
  BOOST_CHECK_EQUAL(lost[0][1], 0u);
  BOOST_CHECK_EQUAL(lost[1][0], 0u);
  BOOST_CHECK_EQUAL(lost[0][2], 1u);
  BOOST_CHECK_EQUAL(lost[1][2], 1u);
}

BOOST_AUTO_TEST_SUITE_END()
