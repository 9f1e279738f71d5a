# Homebrew formula for qwen-daemon (macOS; Linuxbrew too). Not tested in CI: there is no macOS
# runner, and brew cannot run here. Release steps: point url/sha256 at the published sdist, then
# `brew update-python-resources qwen-daemon` regenerates the resources (pins as of 0.1.0 below).
# `brew services start qwen-daemon` then runs it as a LaunchAgent (label homebrew.mxcl.qwen-daemon),
# which `qwen-daemon start/stop/status` recognise as the daemon's owner.
class QwenDaemon < Formula
  include Language::Python::Virtualenv

  desc "Keeps AI coding-agent (ACP) sessions alive and serves them to browsers"
  homepage "https://pypi.org/project/qwen-daemon/"
  url "https://files.pythonhosted.org/packages/source/q/qwen-daemon/qwen_daemon-0.1.0.tar.gz"
  sha256 "set-at-release-to-the-sha256-of-the-published-sdist"
  license "Apache-2.0"

  depends_on "rust" => :build # pydantic-core, under agent-client-protocol
  depends_on "node" # Qwen Code, the agent, is a Node.js program (npm install -g @qwen-code/qwen-code)
  depends_on "python@3.13"

  resource "agent-client-protocol" do
    url "https://files.pythonhosted.org/packages/9d/95/2c28ca34e545ce0282e88272aa3a8abdf8f3f926a0492f567ea11acd071b/agent_client_protocol-0.12.1.tar.gz"
    sha256 "9963ccb590ed96d7dc542c9c023e90676fc76b1c6562e21a9ee112f4fbcb0095"
  end

  resource "annotated-types" do
    url "https://files.pythonhosted.org/packages/5f/56/a8120250d128bed162cd73c76d45f6ef9991f3e068f62a8ee060afa3104a/annotated_types-0.8.0.tar.gz"
    sha256 "13b2beaad985e05e2d6407ee4c4f35590b11f8d693a258a561055cac8f64cab7"
  end

  resource "lockfile" do
    url "https://files.pythonhosted.org/packages/17/47/72cb04a58a35ec495f96984dddb48232b551aafb95bde614605b754fe6f7/lockfile-0.12.2.tar.gz"
    sha256 "6aed02de03cba24efabcd600b30540140634fc06cfa603822d508d5361e9f799"
  end

  resource "platformdirs" do
    url "https://files.pythonhosted.org/packages/71/18/0b0d99f5bf164f04a7a9534c3dbdbe4d5fd2b382667685ad40c192c4d3d1/platformdirs-4.14.8.tar.gz"
    sha256 "96893d686e84e9e6f358a9ea41a8de544df66dbf2ba6cda250e7dc73acf85b9b"
  end

  resource "pydantic" do
    url "https://files.pythonhosted.org/packages/8e/25/3ec212432a6031b65f043eaca9c820ddf87c0d0aa330023e64f79fcb5db6/pydantic-2.14.4.tar.gz"
    sha256 "7c19f1d46f8accf55a4617a6116e1ade64840870f397b846a2c53fb9019414ba"
  end

  resource "pydantic-core" do
    url "https://files.pythonhosted.org/packages/fb/63/0ceb815a7762576027ce388544c573d440574f95afb1302a2496b96db548/pydantic_core-2.50.5.tar.gz"
    sha256 "1e740886083ff95530d694e6a3f09ed914bcf92a496d16acd307c6c3484fc36d"
  end

  resource "python-daemon" do
    url "https://files.pythonhosted.org/packages/3d/37/4f10e37bdabc058a32989da2daf29e57dc59dbc5395497f3d36d5f5e2694/python_daemon-3.1.2.tar.gz"
    sha256 "f7b04335adc473de877f5117e26d5f1142f4c9f7cd765408f0877757be5afbf4"
  end

  resource "sdnotify" do
    url "https://files.pythonhosted.org/packages/ce/d8/9fdc36b2a912bf78106de4b3f0de3891ff8f369e7a6f80be842b8b0b6bd5/sdnotify-0.3.2.tar.gz"
    sha256 "73977fc746b36cc41184dd43c3fe81323e7b8b06c2bb0826c4f59a20c56bb9f1"
  end

  resource "tornado" do
    url "https://files.pythonhosted.org/packages/64/2b/8ff2b41620cbba0eeb0862fed21dcaa5a2ad36c6dd9bb465f9ff7a147be2/tornado-6.6.1.tar.gz"
    sha256 "28e6311402af59c8b02e3fa0f5e7d8eb465b25081381803b127d97e6a4395d5a"
  end

  resource "typing-extensions" do
    url "https://files.pythonhosted.org/packages/f6/cc/6253133b5bb138fc3306cebfbda2c520f545d36b5be2c7255cc528bb45d6/typing_extensions-4.16.0.tar.gz"
    sha256 "dc983d19a509c94dba722ee6abd33940f7c05a89e243c47e907eb4db6f1a43e5"
  end

  resource "typing-inspection" do
    url "https://files.pythonhosted.org/packages/ff/50/0195198eb1d75bab716bb0a813abea4cc394bfa17a92a189f021a34859af/typing_inspection-0.4.5.tar.gz"
    sha256 "7f16c411e7930dc79596d42ab44672a3fe5f60eb34b781a1647e7872363120c7"
  end

  def install
    virtualenv_install_with_resources
  end

  def caveats
    <<~EOS
      qwen-daemon runs Qwen Code, which is installed separately:
        npm install -g @qwen-code/qwen-code
      Credentials: ~/.qwen/settings.json (see Qwen Code's documentation).
      To start it now and at every login:
        brew services start qwen-daemon
      then `qwen-daemon url` prints the link to open in a browser.
    EOS
  end

  service do
    run [opt_bin/"qwen-daemon", "start", "--foreground"]
    keep_alive successful_exit: false
    process_type :interactive # a Background agent is throttled by macOS
    throttle_interval 10
    # launchd's PATH is only /usr/bin:/bin:/usr/sbin:/sbin: Homebrew's node must be found.
    environment_variables PATH: std_service_path_env
    log_path var/"log/qwen-daemon.log"
    error_log_path var/"log/qwen-daemon.log"
  end

  test do
    assert_match version.to_s, shell_output("#{bin}/qwen-daemon --version")
    port = free_port
    # Any command stands in for the agent: the daemon only checks that it exists at start.
    ENV["QWEN_DAEMON_AGENT_CMD"] = "#{Formula["python@3.13"].opt_bin}/python3.13 -c pass"
    begin
      system bin/"qwen-daemon", "start", "--port", port.to_s
      assert_match(/"status": "ok"/, shell_output("curl -s http://127.0.0.1:#{port}/health"))
    ensure
      system bin/"qwen-daemon", "stop"
    end
  end
end
