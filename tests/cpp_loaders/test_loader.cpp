// A C++ loader for the tests, written as any OVMS user writes one (against the interface header).
//
// loader_config_file (optional): its text picks how loaderInit behaves ("throw" throws
// std::runtime_error, "throw-int" throws an int); every hook call is appended to
// <loader_config_file>.log, one line each, so a test can count them.
// custom_loader_options "behaviour" picks how loadModel behaves:
//   (absent)   reads <base_path>/<version>/model.xml and model.bin: MODEL_TYPE_IR;
//   "throw"    throws std::runtime_error("no licence for <model>");
//   "error"    returns MODEL_LOAD_ERROR;  "blacklisted" returns MODEL_BLACKLISTED;
//   "crash"    dereferences a null pointer (the process gets SIGSEGV).
// getModelBlacklistStatus: MODEL_BLACKLISTED while <base_path>/<version>/blacklisted exists.
// Compiled with -DNO_CREATE it exports no createCustomLoader.
#include <fstream>
#include <iterator>
#include <map>
#include <stdexcept>
#include <string>
#include <vector>

#include "custom_loader_interface.hpp"

using ovms::CustomLoaderInterface;
using ovms::CustomLoaderStatus;

namespace {

bool read_file(const std::string& path, std::vector<uint8_t>& into) {
    std::ifstream file(path, std::ios::binary);
    if (!file)
        return false;
    into.assign(std::istreambuf_iterator<char>(file), std::istreambuf_iterator<char>());
    return true;
}

std::string behaviour(const std::string& options) {
    const std::string key = "\"behaviour\":\"";
    size_t at = options.find(key);
    if (at == std::string::npos)
        return "";
    at += key.size();
    return options.substr(at, options.find('"', at) - at);
}

class TestLoader : public CustomLoaderInterface {
public:
    ~TestLoader() override { record("~TestLoader"); }

    CustomLoaderStatus loaderInit(const std::string& loaderConfigFile) override {
        if (!loaderConfigFile.empty())
            log_ = loaderConfigFile + ".log";
        record("loaderInit");
        std::ifstream config(loaderConfigFile);
        std::string mode;
        if (config)
            std::getline(config, mode);
        if (mode == "throw")
            throw std::runtime_error("the licence server is unreachable");
        if (mode == "throw-int")
            throw 42;
        return CustomLoaderStatus::OK;
    }

    CustomLoaderStatus loadModel(const std::string& modelName, const std::string& basePath, const int version,
                                 const std::string& loaderOptions, std::vector<uint8_t>& modelBuffer,
                                 std::vector<uint8_t>& weights) override {
        record("loadModel " + modelName + " " + std::to_string(version));
        std::string mode = behaviour(loaderOptions);
        if (mode == "throw")
            throw std::runtime_error("no licence for " + modelName);
        if (mode == "error")
            return CustomLoaderStatus::MODEL_LOAD_ERROR;
        if (mode == "blacklisted")
            return CustomLoaderStatus::MODEL_BLACKLISTED;
        if (mode == "crash") {
            volatile int* nowhere = nullptr;
            *nowhere = 1;
        }
        std::string folder = basePath + "/" + std::to_string(version) + "/";
        if (!read_file(folder + "model.xml", modelBuffer) || !read_file(folder + "model.bin", weights))
            return CustomLoaderStatus::MODEL_LOAD_ERROR;
        folders_[{modelName, version}] = folder;
        return CustomLoaderStatus::MODEL_TYPE_IR;
    }

    CustomLoaderStatus getModelBlacklistStatus(const std::string& modelName, const int version) override {
        auto found = folders_.find({modelName, version});
        if (found != folders_.end() && std::ifstream(found->second + "blacklisted"))
            return CustomLoaderStatus::MODEL_BLACKLISTED;
        return CustomLoaderStatus::OK;
    }

    CustomLoaderStatus unloadModel(const std::string& modelName, const int version) override {
        record("unloadModel " + modelName + " " + std::to_string(version));
        return CustomLoaderStatus::OK;
    }

    CustomLoaderStatus retireModel(const std::string& modelName) override {
        record("retireModel " + modelName);
        return CustomLoaderStatus::OK;
    }

    CustomLoaderStatus loaderDeInit() override {
        record("loaderDeInit");
        return CustomLoaderStatus::OK;
    }

private:
    void record(const std::string& line) {
        if (!log_.empty())
            std::ofstream(log_, std::ios::app) << line << "\n";
    }

    std::string log_;
    std::map<std::pair<std::string, int>, std::string> folders_;
};

}  // namespace

#ifndef NO_CREATE
extern "C" CustomLoaderInterface* createCustomLoader() { return new TestLoader(); }
#else
extern "C" int notALoader() { return 0; }
#endif
