<?php

declare(strict_types=1);

// For phpunit-php7.xml: the PHP 7 WampObserver takes the place of the PHP 8
// one, and autoload.php loads everything else as usual.

require_once dirname(__DIR__) . '/php7/WampObserver.php';
require_once dirname(__DIR__) . '/autoload.php';
