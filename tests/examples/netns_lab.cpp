#include "netns_lab.hpp"

#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <stdexcept>

namespace testnode {

int run_command(const std::string& command, std::string& output) {
  output.clear();
  auto* pipe = ::popen((command + " 2>&1").c_str(), "r");
  if (!pipe) return -1;
  char buf[512];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof(buf), pipe)) > 0) output.append(buf, n);
  auto status = ::pclose(pipe);
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

namespace {

void must(const std::string& command) {
  std::string out;
  if (run_command(command, out) != 0)
    throw std::runtime_error("`" + command + "` failed: " + out);
}

}  // namespace

netns_lab::netns_lab(size_t nodes)
    : tag_("mnemo" + std::to_string(::getpid())), nodes_(nodes) {
  std::string out;
  // Left over by an earlier run with the same pid that was killed.
  for (size_t i = 0; i <= nodes_; ++i)
    run_command("ip netns del " + (i == nodes_ ? tag_ + "-sw" : netns(i)), out);
  auto sw = tag_ + "-sw";
  auto first = "ip netns add " + sw;
  if (run_command(first, out) != 0)
    throw std::runtime_error(
        "network namespaces are not available here: `" + first + "` failed (" +
        out +
        "). This test needs root (CAP_SYS_ADMIN and CAP_NET_ADMIN) and "
        "iproute2's ip; run it as root (CI does) or skip it explicitly with "
        "--run_test='!bank_cluster/a_cut_off_member_heals_without_divergence'");
  made_.push_back(sw);
  try {
    must("ip -n " + sw + " link set lo up");
    must("ip -n " + sw + " link add br0 type bridge");
    must("ip -n " + sw + " link set br0 up");
    for (size_t i = 0; i < nodes_; ++i) {
      auto ns = netns(i);
      must("ip netns add " + ns);
      made_.push_back(ns);
      auto port = "v" + std::to_string(i);
      must("ip -n " + ns + " link set lo up");
      must("ip -n " + sw + " link add " + port +
           " type veth peer name eth0 netns " + ns);
      must("ip -n " + sw + " link set " + port + " master br0");
      must("ip -n " + sw + " link set " + port + " up");
      must("ip -n " + ns + " addr add " + address(i) + "/24 dev eth0");
      must("ip -n " + ns + " link set eth0 up");
    }
  } catch (...) {
    for (auto& ns : made_) run_command("ip netns del " + ns, out);
    throw;
  }
}

netns_lab::~netns_lab() {
  std::string out;
  // Node namespaces first: deleting them removes the veth pairs.
  for (auto i = made_.rbegin(); i != made_.rend(); ++i)
    run_command("ip netns del " + *i, out);
}

std::string netns_lab::netns(size_t i) const {
  return tag_ + "-n" + std::to_string(i + 1);
}

std::string netns_lab::address(size_t i) const {
  return "10.213.0." + std::to_string(i + 1);
}

std::vector<std::string> netns_lab::exec_prefix(size_t i) const {
  return {"ip", "netns", "exec", netns(i)};
}

void netns_lab::cut(size_t i) {
  must("ip -n " + tag_ + "-sw link set v" + std::to_string(i) + " down");
}

void netns_lab::heal(size_t i) {
  must("ip -n " + tag_ + "-sw link set v" + std::to_string(i) + " up");
}

}  // namespace testnode
