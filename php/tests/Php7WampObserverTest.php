<?php

declare(strict_types=1);

namespace Wamp\Tests;

use PHPUnit\Framework\TestCase;
use Wamp\Tests\Support\Php70Syntax;
use Wamp\Tests\Support\UdpReceiver;

require_once __DIR__ . '/Support/Php70Syntax.php';
require_once __DIR__ . '/Support/UdpReceiver.php';

/**
 * php7/WampObserver.php beside the PHP 8 class: PHP 7.0 syntax, the same
 * public API, the same datagrams. The two are the same global class, so
 * the PHP 7 one runs in a PHP process of its own here; phpunit-php7.xml
 * runs all of WampObserverTest against it too.
 */
final class Php7WampObserverTest extends TestCase
{
    private const PHP7 = __DIR__ . '/../php7/WampObserver.php';

    public function testUsesNothingNewerThanPhp70(): void
    {
        self::assertSame([], Php70Syntax::violations((string) file_get_contents(self::PHP7)));
    }

    public function testHasThePublicApiOfThePhp8Class(): void
    {
        $dump = <<<'PHP'
            function api(string $class): array {
                $r = new ReflectionClass($class);
                $api = ['final' => $r->isFinal(), 'constants' => array_keys($r->getConstants(ReflectionClassConstant::IS_PUBLIC))];
                foreach ($r->getMethods(ReflectionMethod::IS_PUBLIC) as $m) {
                    $params = array_map(fn ($p) => [$p->getName(), (string) $p->getType(), $p->isOptional()], $m->getParameters());
                    $api['methods'][$m->getName()] = [$m->isStatic(), $params];
                }
                foreach ($r->getProperties(ReflectionProperty::IS_PUBLIC) as $p) {
                    $api['properties'][$p->getName()] = [$p->isStatic(), $r->getStaticPropertyValue($p->getName())];
                }
                return $api;
            }
            echo json_encode(api('WampObserver'));
            PHP;
        $php8 = self::runPhp(dirname(__DIR__) . '/WampObserver.php', $dump);
        $php7 = self::runPhp(self::PHP7, $dump);
        self::assertSame(['', ''], [$php8[1], $php7[1]]);
        $want = json_decode($php8[0], true);
        $got = json_decode($php7[0], true);
        self::assertSame(['configure', 'logging', 'log', 'flush'], array_keys($want['methods']));
        self::assertSame($want, $got);
    }

    public function testSendsTheSameDatagramsAsThePhp8Class(): void
    {
        self::assertSame(realpath(dirname(__DIR__) . '/WampObserver.php'), (new \ReflectionClass(\WampObserver::class))->getFileName());
        $big = str_repeat('p', 66000);
        $messages = [
            '[48,1,{"timeout":300},"hello3",["hello world 1"]]',
            '[50,1,{},["Hello from hello3"]]',
            '[8,48,3,{},"wamp.error.timeout",["call timeout"]]',
            '[68,1,25,{"procedure":"hello3"},["hello world 1"]]',
            '[70,1,{},["Hello from hello3"]]',
            '[2,"f7de8d936fb95715","hello4",{"msg":"hello world 1 details"}]',
            'a/b é ☃',
            "[50,7,{\"x\":\"a/é\",\"empty\":{},\"f\":1.0,\"g\":0.1},[\"$big\"],{\"k\":{}}]",
            "[48,2,{},\"com/hello.é\",[\"$big\"]]",
            "[4,\"c3356b633c7ff987\",\"app.error.hello\",\"$big\"]",
            "[36,1,2,{},[\"$big\"]]",
            "\xC3\x28",
            str_repeat('x', 70000),
        ];
        // Through a file: the messages are too long for the environment.
        $file = (string) tempnam(sys_get_temp_dir(), 'wamp-observer-messages');
        file_put_contents($file, serialize($messages));
        $code = 'WampObserver::configure(getenv("TO")); foreach (unserialize(file_get_contents(getenv("MESSAGES"))) as $m) { WampObserver::log("wamp", "out", $m); }'
            . ' echo WampObserver::$shortened, " ", WampObserver::$dropped;';

        $php7Receiver = new UdpReceiver();
        try {
            [$counts7, $stderr] = self::runPhp(self::PHP7, $code, ['TO' => "127.0.0.1:{$php7Receiver->port}", 'MESSAGES' => $file]);
        } finally {
            unlink($file);
        }
        self::assertSame('', $stderr);
        $php7 = $php7Receiver->lines(count($messages), 1.0);
        $php7Receiver->close();

        $php8Receiver = new UdpReceiver();
        \WampObserver::configure("127.0.0.1:{$php8Receiver->port}");
        \WampObserver::$shortened = \WampObserver::$dropped = 0;
        foreach ($messages as $message) {
            \WampObserver::log('wamp', 'out', $message);
        }
        $php8 = $php8Receiver->lines(count($messages), 1.0);
        $php8Receiver->close();

        self::assertCount(10, $php8, '7 whole lines and 3 shortened ones');
        self::assertSame($php8, $php7);
        self::assertSame(\WampObserver::$shortened . ' ' . \WampObserver::$dropped, $counts7);
        self::assertSame('3 3', $counts7);
    }

    /**
     * Runs $code in a fresh PHP process that has loaded $class (a
     * WampObserver file) and nothing else.
     *
     * @param array<string, string> $env
     * @return array{string, string} stdout and stderr
     */
    private static function runPhp(string $class, string $code, array $env = []): array
    {
        $command = ['env', '-u', 'WAMP_OBSERVER_ADDR'];
        foreach ($env as $name => $value) {
            $command[] = "$name=$value";
        }
        array_push($command, PHP_BINARY, '-d', 'display_errors=stderr', '-d', 'error_reporting=-1',
            '-r', 'require ' . var_export($class, true) . "; $code");
        $process = proc_open($command, [1 => ['pipe', 'w'], 2 => ['pipe', 'w']], $pipes);
        $stdout = stream_get_contents($pipes[1]);
        $stderr = stream_get_contents($pipes[2]);
        proc_close($process);
        return [(string) $stdout, (string) $stderr];
    }
}
